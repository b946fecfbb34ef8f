"""Rows follow the files: --force on a photo with no face left, >64 copies of one photo, deleting one copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from facesearch.store.records import MAX_PATHS_PER_IMAGE

pytestmark = pytest.mark.integration


def stored_paths(cli, photo: Path) -> list[list[str]]:
    """image_paths of every stored face of ``photo``'s bytes (via search: the photo finds itself first)."""
    doc = cli("search", str(photo), "-k", "1", "--json")
    assert doc.exit_code == 0, doc.stderr
    return [face["hits"][0] for face in doc.json["faces"]]


def test_force_reindex_of_a_photo_with_no_face_left_deletes_its_rows(cli, tmp_path: Path, johns: Path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for src in sorted((johns / "John_Simm").glob("*.jpg"))[:3]:
        shutil.copy(src, photos / src.name)
    first = cli("index", str(photos), "--json").json
    assert first["images_indexed"] == 3 and first["faces_indexed"] >= 3
    before = cli("stats", "--json").json["faces"]
    target = min(photos.glob("*.jpg"))
    target_faces = len(stored_paths(cli, target))

    # stricter detection finds no face in this photo any more: its old rows must go, not linger
    forced = cli("index", str(target), "--force", "--json", settings_args=("--set", "detection.thresholds=[0.6, 0.7, 1.01]"))  # O-net accepts nothing
    assert forced.exit_code == 0, forced.stderr
    skipped = forced.json["images_skipped"]
    assert [s["reason"] for s in skipped] == ["no_face"] and "deleted" in skipped[0]["detail"]
    assert cli("stats", "--json").json["faces"] == before - target_faces
    hits = cli("search", str(target), "-k", "10", "--json").json["faces"][0]["hits"]
    assert all(Path(h["image_path"]).name != target.name for h in hits)


def test_more_copies_than_a_row_holds_are_refused_and_reported(cli, tmp_path: Path, johns: Path):
    """Byte-identical copies share rows; past MAX_PATHS_PER_IMAGE paths the extra copies are reported, never dropped silently."""
    src = min((johns / "John_Salley").glob("*.jpg"))
    photos = tmp_path / "copies"
    photos.mkdir()
    extra = 2
    for i in range(MAX_PATHS_PER_IMAGE + extra):
        shutil.copy(src, photos / f"copy_{i:03d}.jpg")
    doc = cli("index", str(photos), "--json")
    assert doc.exit_code == 0, doc.stderr
    skipped = doc.json["images_skipped"]
    assert [s["reason"] for s in skipped] == ["too_many_copies"] * extra
    assert all(str(MAX_PATHS_PER_IMAGE) in s["detail"] for s in skipped)
    recorded = cli("search", str(src), "-k", "1", "--json").json["faces"][0]["hits"][0]
    assert recorded["distance"] < 1e-3
    skipped_paths = {Path(s["path"]).name for s in skipped}
    assert len(skipped_paths) == extra
    again = cli("index", str(photos), "--json").json  # idempotent: the same copies are refused again, nothing else changes
    assert sorted(Path(s["path"]).name for s in again["images_skipped"]) == sorted(skipped_paths)


def test_deleting_one_of_several_identical_copies_keeps_the_faces(cli, tmp_path: Path, johns: Path):
    """admin.delete_image: the rows stay while another path holds the same bytes; the last path deletes them."""
    src = min((johns / "John_Simm").glob("*.jpg"))
    photos = tmp_path / "photos"
    photos.mkdir()
    copies = [photos / name for name in ("a.jpg", "b.jpg", "c.jpg")]
    for copy in copies:
        shutil.copy(src, copy)
    indexed = cli("index", str(photos), "--json").json
    faces = indexed["faces_indexed"]
    assert indexed["images_indexed"] == 1 and faces >= 1 and cli("stats", "--json").json["faces"] == faces

    first = cli("delete", "--image", str(copies[0]), "--json").json
    assert first == {"deleted": 0, "paths_removed": 1}
    assert cli("stats", "--json").json["faces"] == faces
    hit = cli("search", str(src), "-k", "1", "--json").json["faces"][0]["hits"][0]
    assert Path(hit["image_path"]).name == "b.jpg" and hit["distance"] < 1e-3

    assert cli("delete", "--image", str(copies[1]), "--json").json == {"deleted": 0, "paths_removed": 1}
    last = cli("delete", "--image", str(copies[2]), "--json").json
    assert last == {"deleted": faces, "paths_removed": 1}
    assert cli("stats", "--json").json["faces"] == 0


def test_a_row_with_too_many_paths_is_refused_not_truncated():
    import numpy as np

    from facesearch.errors import StoreError
    from facesearch.store import FaceRecord

    paths = [f"/p/{i}.jpg" for i in range(MAX_PATHS_PER_IMAGE + 1)]
    record = FaceRecord(1, paths[0], paths, "ab" * 32, 0, 0, [0, 0, 1, 1], 0.99, "", "dlib-resnet-v1", np.zeros(4, np.float32))
    with pytest.raises(StoreError, match=f"at most {MAX_PATHS_PER_IMAGE}"):
        record.to_row()
    assert record.__class__(**{**record.__dict__, "image_paths": paths[:-1]}).to_row()["image_paths"] == paths[:-1]
