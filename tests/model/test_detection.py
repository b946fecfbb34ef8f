"""MTCNN against the hand-labelled face boxes of the VOC sample photos."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from facesearch.detect import FaceDetector
from facesearch.images import load_image
from facesearch.settings import load_settings

pytestmark = pytest.mark.model


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


def test_mtcnn_finds_annotated_voc_faces(samples: Path):
    settings = load_settings()
    detector = FaceDetector(settings.detection)
    truth = annotated_boxes(samples / "voc_groups" / "testing.xml")
    found = total = false_pos = 0
    for name, boxes in truth.items():
        detections = detector.detect(load_image(samples / "voc_groups" / name, settings.images).image)
        total += len(boxes)
        matched = [any(iou(box, d.bbox) >= 0.4 for d in detections) for box in boxes]
        found += sum(matched)
        false_pos += sum(not any(iou(box, d.bbox) >= 0.4 for box in boxes) for d in detections)
    recall = found / total
    print(f"\nMTCNN recall on voc_groups/testing.xml: {found}/{total} = {recall:.3f} (IoU>=0.4), unmatched detections: {false_pos}")
    assert total >= 20
    assert recall >= 0.90


def test_no_face_in_dog_photo(samples: Path):
    settings = load_settings()
    detector = FaceDetector(settings.detection)
    assert detector.detect(load_image(samples / "voc_groups" / "dogs.jpg", settings.images).image) == []


def test_boxes_map_back_to_original_resolution(samples: Path):
    """Downscaling before detection must not change where faces are reported."""
    settings = load_settings()
    photo = load_image(samples / "group_photos" / "sample1.jpg", settings.images).image
    assert max(photo.size) > settings.detection.max_side
    small = FaceDetector(settings.detection).detect(photo)
    full = FaceDetector(settings.detection.model_copy(update={"max_side": max(photo.size)})).detect(photo)
    assert len(small) == len(full) >= 3
    for a, b in zip(small, full, strict=True):
        assert iou(a.bbox, b.bbox) > 0.8
        assert 0 <= a.bbox[0] < a.bbox[2] <= photo.width and 0 <= a.bbox[1] < a.bbox[3] <= photo.height
