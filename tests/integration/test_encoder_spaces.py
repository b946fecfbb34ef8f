"""Each encoder is its own embedding space: a collection built by one is never queried with another's vectors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_a_dlib_collection_refuses_sface_queries_and_auto_follows_it(cli, tmp_path: Path, johns: Path):
    photos = tmp_path / "people"
    for person in sorted(p for p in johns.iterdir() if p.is_dir())[:2]:
        shutil.copytree(person, photos / person.name)
    built = cli("index", str(photos), "--identity-from-folder", "--json")  # the test CLI pins encoder.backend=dlib
    assert built.exit_code == 0 and built.json["encoder"] == "dlib-resnet-v1"
    query = str(next((photos / sorted(p.name for p in photos.iterdir())[0]).glob("*.jpg")))

    refused = cli("identify", query, "--json", settings_args=("--set", "encoder.backend=sface"))
    assert refused.exit_code == 1 and refused.stdout == ""
    assert "dlib-resnet-v1" in refused.stderr and "sface-2021dec" in refused.stderr and "encoder.backend=dlib" in refused.stderr

    followed = cli("identify", query, "--json", settings_args=("--set", "encoder.backend=auto"))
    assert followed.exit_code == 0, followed.stderr
    assert followed.json["faces"][0]["identity"] == Path(query).parent.name
