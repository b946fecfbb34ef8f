"""Every shipped detector (MTCNN, YuNet) against the hand-labelled face boxes of the VOC sample photos."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from facesearch.ingest.images import load_image
from facesearch.models.detectors.base import FaceDetector
from facesearch.models.encoders import build_detector
from facesearch.settings import load_settings

pytestmark = pytest.mark.model

DETECTORS = ["mtcnn", "yunet"]
GROUP_FACES = {"sample1.jpg": 3, "sample2.jpg": 3, "sample3.jpg": 3, "sample4.jpg": 4, "sample5.jpg": 5, "sample6.jpg": 4}  # counted by eye


def make_detector(name: str, **changes) -> FaceDetector:
    settings = load_settings(overrides={"detection": {"backend": name, **changes}})
    return build_detector(settings)


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def annotated_boxes(xml_path: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    boxes = {}
    for image in ET.parse(xml_path).getroot().iter("image"):
        boxes[image.get("file")] = [
            (float(b.get("left")), float(b.get("top")), float(b.get("left")) + float(b.get("width")), float(b.get("top")) + float(b.get("height")))
            for b in image.iter("box")
            if b.get("ignore") != "1"
        ]
    return boxes


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_finds_annotated_voc_faces(samples: Path, name: str):
    settings = load_settings()
    detector = make_detector(name)
    truth = {**annotated_boxes(samples / "voc_groups" / "testing.xml"), **annotated_boxes(samples / "voc_groups" / "training.xml")}
    found = total = false_pos = 0
    for name, boxes in truth.items():
        detections = detector.detect(load_image(samples / "voc_groups" / name, settings.images).image)
        total += len(boxes)
        matched = [any(iou(box, d.bbox) >= 0.4 for d in detections) for box in boxes]
        found += sum(matched)
        false_pos += sum(not any(iou(box, d.bbox) >= 0.4 for box in boxes) for d in detections)
    recall = found / total
    print(f"\n{name} recall on voc_groups (testing+training): {found}/{total} = {recall:.3f} (IoU>=0.4), unmatched: {false_pos}")
    assert total == 43
    assert found >= 42


@pytest.mark.parametrize("name", DETECTORS)
def test_no_face_in_dog_photo(samples: Path, name: str):
    settings = load_settings()
    detector = make_detector(name)
    assert detector.detect(load_image(samples / "voc_groups" / "dogs.jpg", settings.images).image) == []


@pytest.mark.parametrize("name", DETECTORS)
def test_boxes_map_back_to_original_resolution(samples: Path, name: str):
    """Downscaling before detection must not change where faces are reported."""
    settings = load_settings()
    photo = load_image(samples / "group_photos" / "sample1.jpg", settings.images).image
    assert max(photo.size) > settings.detection.max_side
    small = make_detector(name).detect(photo)
    full = make_detector(name, max_side=max(photo.size)).detect(photo)
    assert len(small) == len(full) >= 3
    for a, b in zip(small, full, strict=True):
        assert iou(a.bbox, b.bbox) > 0.8
        assert 0 <= a.bbox[0] < a.bbox[2] <= photo.width and 0 <= a.bbox[1] < a.bbox[3] <= photo.height


@pytest.mark.parametrize("name", DETECTORS)
def test_close_ups_that_fill_the_frame_are_found_on_the_padded_retry(samples: Path, name: str):
    """MTCNN's pyramid and YuNet's anchors have no level for a face filling the frame; the bordered retry finds it."""
    settings = load_settings()
    plain = make_detector(name, retry_padded=False)
    detector = make_detector(name)
    missed = 0
    for path in sorted((samples / "johns" / "John_Simm").glob("*.jpg")):
        portrait = load_image(path, settings.images).image
        inner = round(portrait.width * 0.6)
        offset = (portrait.width - inner) // 2
        close_up = portrait.crop((offset, offset, offset + inner, offset + inner)).resize((900, 900))
        if plain.detect(close_up):
            continue
        missed += 1
        found = detector.detect(close_up)
        assert len(found) == 1, path.name
        x1, y1, x2, y2 = found[0].bbox
        assert 0 <= x1 < x2 <= 900 and 0 <= y1 < y2 <= 900 and (x2 - x1) * (y2 - y1) > 0.3 * 900 * 900
        left_eye, right_eye = found[0].landmarks[:2]
        assert 0 < left_eye[0] < right_eye[0] < 900 and 0 < left_eye[1] < 560, path.name  # eyes up, in order
    print(f"\n{name}: close-ups missed without the retry: {missed} of 11, all found with it")
    if not missed:
        pytest.skip(f"{name} found every close-up without help; the retry was not exercised")


@pytest.mark.parametrize(("name", "at_least"), [("mtcnn", 20), ("yunet", 22)])
def test_real_faces_in_the_group_photos(samples: Path, name: str, at_least: int):
    """The 1920-px group photos (22 faces counted by eye): no photo gets more faces than it has.

    MTCNN's 0.9 probability cut drops two real faces of sample2 (measured, README: Models); YuNet finds all 22.
    """
    settings = load_settings()
    detector = make_detector(name)
    found = {n: len(detector.detect(load_image(samples / "group_photos" / n, settings.images).image)) for n in GROUP_FACES}
    assert all(found[n] <= GROUP_FACES[n] for n in GROUP_FACES), found
    assert sum(found.values()) >= at_least, found


def test_yunet_landmarks_are_in_the_detection_order(samples: Path):
    """YuNet's first eye is the person's right eye, the image's left: the order alignment expects."""
    settings = load_settings()
    faces = make_detector("yunet").detect(load_image(samples / "group_photos" / "sample2.jpg", settings.images).image)
    assert faces
    for face in faces:
        (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
        assert lx < rx and mlx < mrx and (ly + ry) / 2 < ny < (mly + mry) / 2, face.landmarks


def test_mtcnn_image_smaller_than_min_face_size_has_no_face(johns: Path):
    """facenet-pytorch builds no pyramid level then and crashed in torch.cat (seen with detection.min_face_size=4000)."""
    settings = load_settings(overrides={"detection": {"backend": "mtcnn", "min_face_size": 4000, "retry_padded": True}})
    image = load_image(min(johns.glob("John_Simm/*.jpg")), settings.images).image
    assert build_detector(settings).detect(image) == []
    assert len(make_detector("mtcnn").detect(image)) == 1  # the same photo has a face at the default size
