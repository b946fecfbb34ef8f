"""A Milvus Lite store moves itself to the local Milvus standalone once it passes milvus.auto_server_faces.

Real Milvus Lite, a real Milvus 2.3.5 standalone (the ``milvus`` wheel) started by FaceSearch, the real CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from facesearch.cli import app
from facesearch.store.local_server import LocalMilvusServer
from facesearch.store.moved import marker_path, read_marker


def _cli(lite: Path, server_dir: Path, threshold: int, *args: str) -> tuple[int, str, str]:
    sets = [f"milvus.uri={lite}", f"milvus.server_dir={server_dir}", f"milvus.auto_server_faces={threshold}", "encoder.backend=sface", "index.nlist=16"]
    result = CliRunner().invoke(app, [*(a for s in sets for a in ("--set", s)), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _hits(stdout: str) -> list[tuple[str, float]]:
    doc = json.loads(stdout)
    faces = doc["faces"] if isinstance(doc, dict) else doc
    return [(h["image_path"], round(h["distance"], 4)) for f in faces for h in f["hits"]]


def test_lite_store_moves_to_the_standalone_and_answers_the_same(tmp_path: Path, johns: Path) -> None:
    lite, server_dir = tmp_path / "lite" / "faces.db", tmp_path / "server"
    query = min((johns / min(p.name for p in johns.iterdir() if p.is_dir())).glob("*.jpg"))
    try:
        code, out, err = _cli(lite, server_dir, 0, "index", str(johns), "--identity-from-folder", "--json")
        assert code == 0, err
        assert "store_moved_to_server" not in json.loads(out) and not marker_path(str(lite)).exists()
        code, before, err = _cli(lite, server_dir, 0, "search", str(query), "--json")
        assert code == 0, err
        code, out, err = _cli(lite, server_dir, 0, "stats", "--json")
        faces, collection = json.loads(out)["faces"], json.loads(out)["collection"]
        assert json.loads(out)["backend"] == "milvus-lite" and faces >= 50

        # below the threshold nothing moves; at it, the next index run moves every collection and alias
        code, out, err = _cli(lite, server_dir, faces + 1, "index", str(johns), "--identity-from-folder", "--json")
        assert code == 0 and not marker_path(str(lite)).exists(), err
        code, out, err = _cli(lite, server_dir, faces, "index", str(johns), "--identity-from-folder", "--json")
        assert code == 0, err
        assert json.loads(out)["store_moved_to_server"] == str(server_dir.resolve())
        moved = read_marker(str(lite))
        assert moved is not None and moved.faces == faces and collection in moved.collections
        assert LocalMilvusServer(server_dir).running() is not None

        code, out, err = _cli(lite, server_dir, faces, "stats", "--json")
        assert code == 0, err
        stats = json.loads(out)
        assert stats["backend"] == "milvus-server" and stats["faces"] == faces and stats["index"]["nlist"] == 16
        code, after, err = _cli(lite, server_dir, faces, "search", str(query), "--json")
        assert code == 0, err
        assert _hits(after) == _hits(before)

        # a move killed after copying but before its marker is written is done again: the rows already on the
        # server are upserted by primary key (a fresh copy is inserted), so none is duplicated
        marker_path(str(lite)).unlink()
        code, out, err = _cli(lite, server_dir, faces, "index", str(johns), "--identity-from-folder", "--json")
        assert code == 0 and json.loads(out)["store_moved_to_server"] == str(server_dir.resolve()), err
        code, out, err = _cli(lite, server_dir, faces, "stats", "--json")
        assert json.loads(out)["backend"] == "milvus-server" and json.loads(out)["faces"] == faces, err

        # re-running index on the server is idempotent: nothing re-embedded, no duplicate rows
        code, out, err = _cli(lite, server_dir, faces, "index", str(johns), "--identity-from-folder", "--json")
        assert code == 0 and json.loads(out)["images_indexed"] == 0, err
        code, out, err = _cli(lite, server_dir, faces, "stats", "--json")
        assert json.loads(out)["faces"] == faces

        # the server is started again on demand after it stops
        LocalMilvusServer(server_dir).stop()
        code, out, err = _cli(lite, server_dir, faces, "stats", "--json")
        assert code == 0 and json.loads(out)["faces"] == faces, err
    finally:  # clean-up only: Milvus 2.3 rarely stops gracefully in time (collections loaded), so do not wait 20 s to kill it
        LocalMilvusServer(server_dir, stop_timeout_s=5).stop()
