"""YuNet + SFace on every inference engine give OpenCV's own faces and vectors (real weights, real photos).

``engine: opencv`` is the reference (``cv2.FaceDetectorYN`` / ``cv2.FaceRecognizerSF``). The other engines
run the dequantised graph (facesearch.models.runtime) and FaceSearch's own YuNet decoding, so a slip in
either (a wrong dequantisation axis, an anchor off by one stride) shows up here as moved boxes or vectors.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from facesearch.errors import ConfigError
from facesearch.ingest.images import load_image
from facesearch.models.encoders import build_encoder
from facesearch.models.runtime import dequantise_weights, resolve_engine
from facesearch.settings import InferenceSettings, load_settings

pytestmark = pytest.mark.model

HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


def faces_with(engine: str, precision: str, photos: list[Path], cache: Path) -> list[list]:
    settings = load_settings(overrides={"encoder": {"backend": "sface"}, "inference": {"engine": engine, "precision": precision, "cache_dir": str(cache)}})
    encoder = build_encoder(settings)
    return encoder.encode_loaded([load_image(p, settings.images) for p in photos])


@pytest.fixture(scope="module")
def photos(samples: Path) -> list[Path]:
    return sorted((samples / "group_photos").glob("*.jpg"))[:3] + sorted((samples / "voc_groups").glob("2*.jpg"))[:3]


@pytest.fixture(scope="module")
def reference(photos: list[Path], tmp_path_factory: pytest.TempPathFactory) -> list[list]:
    return faces_with("opencv", "fp32", photos, tmp_path_factory.mktemp("cache"))


ENGINES = [("onnxruntime", "fp32", 0.9999)] + ([("openvino", "fp32", 0.9999), ("openvino", "bf16", 0.995)] if HAS_OPENVINO else [])


@pytest.mark.parametrize(("engine", "precision", "min_cosine"), ENGINES)
def test_engine_matches_opencv(engine: str, precision: str, min_cosine: float, photos: list[Path], reference: list[list], tmp_path: Path):
    ours = faces_with(engine, precision, photos, tmp_path)
    assert [len(f) for f in ours] == [len(f) for f in reference] and sum(map(len, reference)) >= 10
    for mine, theirs in zip(ours, reference, strict=True):
        for a, b in zip(mine, theirs, strict=True):
            assert np.abs(np.subtract(a.bbox, b.bbox)).max() < 0.5  # YuNet always runs fp32: same boxes
            assert np.abs(np.subtract(a.landmarks, b.landmarks)).max() < 0.5
            assert float(np.dot(a.embedding, b.embedding)) >= min_cosine
    assert list(tmp_path.glob("*-fp32-dyn*.onnx")), "the dequantised graphs are cached"
    if engine == "openvino":  # YuNet takes the padded uint8 RGB photo: conversion inside the compiled model
        assert list(tmp_path.glob("*yunet*-rgb-u8.xml")), "the pre-processing graph is cached"


def test_dequantisation_handles_blocked_per_axis_and_per_tensor_scales():
    import onnx
    from onnx import helper, numpy_helper

    x = np.arange(-8, 8, dtype=np.int8).reshape(4, 4)
    cases = {
        "tensor": (np.array(0.5, np.float32), {}, x * 0.5),
        "axis": (np.array([1, 2, 3, 4], np.float32), {"axis": 0}, x * np.array([[1], [2], [3], [4]])),
        "block": (
            np.array([[1, 10], [2, 20], [3, 30], [4, 40]], np.float32),
            {"axis": 1, "block_size": 2},
            x * np.array([[1, 1, 10, 10], [2, 2, 20, 20], [3, 3, 30, 30], [4, 4, 40, 40]]),
        ),
    }
    for name, (scale, attrs, expected) in cases.items():
        graph = helper.make_graph(
            [helper.make_node("DequantizeLinear", ["x", "s"], ["w"], **attrs), helper.make_node("Identity", ["w"], ["y"])],
            name,
            [],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4, 4])],
            [numpy_helper.from_array(x, "x"), numpy_helper.from_array(scale, "s")],
        )
        model = helper.make_model(graph)
        assert dequantise_weights(model) == 1
        folded = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        np.testing.assert_allclose(folded["w"], expected, err_msg=name)
        assert not [n for n in model.graph.node if n.op_type == "DequantizeLinear"]


def test_engine_auto_and_missing_engine(monkeypatch: pytest.MonkeyPatch):
    assert resolve_engine(InferenceSettings(engine="auto")) == ("openvino" if HAS_OPENVINO else "onnxruntime")
    assert resolve_engine(InferenceSettings(engine="onnxruntime")) == "onnxruntime"
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real_find_spec(name, *a))
    assert resolve_engine(InferenceSettings(engine="auto")) == "onnxruntime"
    with pytest.raises(ConfigError, match="openvino is not installed"):
        resolve_engine(InferenceSettings(engine="openvino"))


def narrowed_threads() -> dict[int, list[int]]:
    """This process's threads allowed on fewer CPUs than the process itself."""
    allowed = os.sched_getaffinity(0)
    narrowed = {}
    for tid in os.listdir(f"/proc/{os.getpid()}/task"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            if (cpus := os.sched_getaffinity(int(tid))) != allowed:
                narrowed[int(tid)] = sorted(cpus)
    return narrowed


@pytest.mark.skipif(not HAS_OPENVINO or not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs OpenVINO and 2+ cores")
def test_one_thread_openvino_runner_leaves_its_thread_unpinned(photos: list[Path], tmp_path: Path):
    """A Dask worker's one inference thread must not be pinned: OpenVINO pins every process to the same first core."""
    one = {"engine": "openvino", "threads": 1, "streams": 1, "cache_dir": str(tmp_path)}
    settings = load_settings(overrides={"encoder": {"backend": "sface", "num_threads": 1}, "inference": one})
    encoder = build_encoder(settings)
    loaded = [load_image(p, settings.images) for p in photos]
    encoder.encode_loaded(loaded[:1])  # loads both models: their one-time dequantisation runs onnxruntime, which pins a pool thread
    seen: dict[int, list[int]] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(narrowed_threads())
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        faces = encoder.encode_loaded(loaded)
    finally:
        done.set()
        watcher.join()
    assert sum(map(len, faces)) >= 10
    assert seen == {}, f"threads pinned during inference: {seen}"
