"""Pure functions: ids, index descriptions, calibration, duplicate verification, fingerprints."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facesearch.ingest.fingerprint import hamming, image_phash
from facesearch.ingest.indexer import face_id
from facesearch.serve.calibrate import calibrate_threshold
from facesearch.serve.duplicates import _CopyRule, _group, _Photo, same_layout
from facesearch.store import parse_index_description


def test_face_id_is_deterministic_positive_int64_and_distinct():
    a = face_id("ab" * 32, 0, "dlib-resnet-v1")
    assert a == face_id("ab" * 32, 0, "dlib-resnet-v1")
    assert 0 <= a < 2**63
    others = {face_id("ab" * 32, 1, "dlib-resnet-v1"), face_id("ab" * 32, 0, "facenet-vggface2"), face_id("cd" * 32, 0, "dlib-resnet-v1")}
    assert a not in others and len(others) == 3


@pytest.mark.parametrize(
    ("desc", "nlist"),
    [
        ({"index_type": "IVF_FLAT", "metric_type": "L2", "params": {"nlist": 64}}, 64),  # milvus-lite
        ({"index_type": "IVF_FLAT", "metric_type": "L2", "nlist": "128"}, 128),  # server, flat strings
        ({"index_type": "IVF_FLAT", "metric_type": "L2", "params": '{"nlist": 32}'}, 32),  # JSON string
        ({"index_type": "IVF_FLAT", "metric_type": "L2"}, None),  # nlist silently dropped
    ],
)
def test_parse_index_description(desc, nlist):
    info = parse_index_description(desc)
    assert info.nlist == nlist and info.index_type == "IVF_FLAT" and info.metric_type == "L2"


def test_calibration_finds_the_gap():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    vectors = np.concatenate([c + 0.05 * rng.normal(size=(5, 16)) for c in centres])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = [str(i) for i in range(4) for _ in range(5)]
    cal = calibrate_threshold(vectors, labels)
    assert cal.balanced_accuracy == 1.0 and cal.false_accept_rate == 0.0
    assert cal.genuine_mean < cal.threshold < cal.impostor_mean
    assert cal.genuine_pairs == 4 * 10 and cal.impostor_pairs == 190 - 40
    with pytest.raises(ValueError):
        calibrate_threshold(vectors[:5], labels[:5])


def test_same_layout_accepts_resize_and_crop_rejects_shuffle():
    boxes = [(100, 100, 150, 160), (300, 120, 340, 170), (500, 90, 560, 160)]
    resized_cropped = [tuple(v * 0.5 - 20 for v in b) for b in boxes]
    assert same_layout(list(zip(boxes, resized_cropped)), 0.25)
    shuffled = [resized_cropped[1], resized_cropped[0], resized_cropped[2]]
    assert not same_layout(list(zip(boxes, shuffled)), 0.25)


def test_group_rules():
    photos = {
        "a": _Photo(["/p/a.jpg"], 0b1010, {0: [0, 0, 10, 10]}),
        "b": _Photo(["/p/b.jpg"], 0b1011, {0: [0, 0, 5, 5]}),  # 1 bit from a: resized copy
        "c": _Photo(["/p/c.jpg", "/p/c2.jpg"], (1 << 40) - 1, {0: [0, 0, 10, 10]}),  # same person, other photo; two paths
        "d": _Photo(["/p/d.jpg"], (1 << 50) - 1, {0: [0, 0, 10, 10]}),  # pHash far, face nearly identical: a crop
    }
    matches = {
        ("a", "b"): {0: (0.1, 0)},
        ("b", "a"): {0: (0.1, 0)},
        ("a", "c"): {0: (0.3, 0)},
        ("c", "a"): {0: (0.3, 0)},
        ("d", "a"): {0: (0.05, 0)},
    }
    groups = _group(photos, matches, _CopyRule(near_identical=0.09, phash_max_bits=6, layout_tolerance=0.25))
    as_sets = [set(g.images) for g in groups]
    assert {"/p/a.jpg", "/p/b.jpg", "/p/d.jpg"} in as_sets
    assert {"/p/c.jpg", "/p/c2.jpg"} in as_sets  # byte-identical copies at two paths
    assert len(groups) == 2


def test_phash_survives_resize_not_other_pictures():
    rng = np.random.default_rng(1)
    img = Image.fromarray((rng.random((120, 160, 3)) * 255).astype(np.uint8)).resize((640, 480))
    other = Image.fromarray((rng.random((120, 160, 3)) * 255).astype(np.uint8)).resize((640, 480))
    assert hamming(image_phash(img), image_phash(img.resize((320, 240)))) <= 4
    assert hamming(image_phash(img), image_phash(other)) > 12
    assert 0 <= image_phash(img) < 2**63
