"""`facesearch calibrate`: its JSON on the johns (real dlib model), and the configured threshold it justifies."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from facesearch.settings import load_settings

pytestmark = pytest.mark.integration


def test_calibrate_on_the_johns_reproduces_the_configured_dlib_threshold(cli, johns: Path):
    result = cli("calibrate", str(johns), "--json")
    assert result.exit_code == 0, result.stderr
    doc = result.json
    people = sorted(p.name for p in johns.iterdir() if p.is_dir())
    photos = sum(1 for p in johns.glob("*/*.jpg"))
    assert doc["encoder"] == "dlib-resnet-v1" and doc["identities"] == len(people)
    assert 0.8 * photos <= doc["faces"] <= photos  # photos with exactly one face found
    assert doc["genuine_pairs"] + doc["impostor_pairs"] == doc["faces"] * (doc["faces"] - 1) // 2
    assert doc["genuine_mean"] < doc["threshold"] < doc["impostor_mean"]
    assert doc["balanced_accuracy"] >= 0.95 and doc["false_accept_rate"] <= 0.05 and doc["false_reject_rate"] <= 0.05
    configured = load_settings().identify.thresholds["dlib-resnet-v1"]
    assert abs(doc["threshold"] - configured) < 0.01, (doc, configured)  # configs/default.yaml cites this run


def test_calibrate_needs_two_people(cli, tmp_path: Path, johns: Path):
    one = tmp_path / "one"
    shutil.copytree(johns / "John_Simm", one / "John_Simm")
    result = cli("calibrate", str(one), "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert "at least two people" in result.stderr
