"""``facesearch index --dask``: an ad-hoc folder embedded on a real Dask ``LocalCluster`` (2 worker processes).

It must store the rows the in-process ``facesearch index`` stores (same primary keys, identities, merged
paths, vectors within the engine's tolerance) and report the same skipped files; a second run adds nothing;
an unreachable scheduler fails in seconds with one line naming it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from facesearch.settings import load_settings, parse_overrides
from facesearch.store import FaceStore

pytestmark = [pytest.mark.integration, pytest.mark.single_session]

FIELDS = ["id", "image_sha256", "face_index", "identity", "image_paths", "embedding"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, samples: Path) -> Path:
    """Two people's photos, a group photo, one photo copied into another folder, and a file that is no image."""
    root = tmp_path_factory.mktemp("adhoc") / "photos"
    for person in sorted(p for p in (samples / "johns").iterdir() if p.is_dir())[:2]:
        (root / person.name).mkdir(parents=True)
        for photo in sorted(person.glob("*.jpg"))[:3]:
            shutil.copy2(photo, root / person.name / photo.name)
    (root / "groups").mkdir()
    shutil.copy2(samples / "group_photos" / "sample3.jpg", root / "groups" / "sample3.jpg")
    first = min(root.glob("John_*/*.jpg"))
    shutil.copy2(first, root / "groups" / f"copy-of-{first.name}")  # same bytes, two paths, two identities
    (root / "groups" / "notes.jpg").write_text("not a photo " * 20)
    return root


def overrides(tmp: Path) -> list[str]:
    return [f"milvus.uri={tmp / 'milvus.db'}", "milvus.db_name=", "milvus.retries=0", "milvus.search_consistency=Strong",
            f"paths.embeddings_dir={tmp / 'embeddings'}", "compute.workers=2", "compute.shard_images=2"]  # fmt: skip


def index(tmp: Path, folder: Path, *extra: str, sets: tuple[str, ...] = ()) -> tuple[Any, float]:
    from facesearch.cli import app

    args = [a for s in [*overrides(tmp), *sets] for a in ("--set", s)]
    started = time.monotonic()
    result = CliRunner().invoke(app, [*args, "index", str(folder), "--identity-from-folder", "--json", *extra])
    return result, time.monotonic() - started


def stored_rows(tmp: Path) -> dict[tuple[str, int, int], dict[str, Any]]:
    settings = load_settings(overrides=parse_overrides(overrides(tmp)))
    with FaceStore(settings.milvus) as store:
        rows = store.query(store.alias_target(settings.milvus.alias), "face_index >= 0", FIELDS)
    keyed = {(r["image_sha256"], int(r["face_index"]), int(r["id"])): r for r in rows}
    assert len(keyed) == len(rows) == len({r["id"] for r in rows}), "duplicate primary keys"
    return keyed


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory, folder: Path) -> tuple[dict[str, Any], dict]:
    tmp = tmp_path_factory.mktemp("in-process")
    result, _ = index(tmp, folder)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), stored_rows(tmp)


def test_index_on_dask_stores_the_rows_of_the_in_process_index(tmp_path: Path, folder: Path, prefect_harness, in_process, monkeypatch):
    for name, value in (("PREFECT_SERVER_ANALYTICS_ENABLED", "false"), ("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")):
        monkeypatch.setenv(name, value)  # what the CLI sets for Prefect, undone after the test
    want_doc, want_rows = in_process
    result, _ = index(tmp_path, folder, "--dask", "local")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # stdout holds the one JSON document and nothing else
    embed = doc.pop("embed")
    assert embed["workers"] == "local" and embed["shards"] >= 3 and embed["images_embedded"] == want_doc["images_indexed"]
    assert doc == want_doc  # counts, skipped files (reason and detail), collection and encoder
    assert [s["reason"] for s in doc["images_skipped"]] == ["not_an_image"]
    got_rows = stored_rows(tmp_path)
    assert sorted(got_rows) == sorted(want_rows) and len(want_rows) >= 8
    for key, want in want_rows.items():
        got = got_rows[key]
        assert (got["identity"], sorted(got["image_paths"])) == (want["identity"], sorted(want["image_paths"])), key
        cosine = float(np.dot(np.asarray(got["embedding"]), np.asarray(want["embedding"])))
        assert cosine >= 1 - 1e-4, (key, cosine)
    assert any(len(r["image_paths"]) == 2 for r in got_rows.values()), "the copied photo's two paths were not merged"

    again, _ = index(tmp_path, folder, "--dask", "local")  # every image is stored: nothing to embed, nothing added
    assert again.exit_code == 0, again.output
    second = json.loads(again.stdout)
    assert second["embed"] is None and second["images_indexed"] == second["faces_indexed"] == 0
    assert second["images_unchanged"] == doc["images_indexed"] + doc["images_unchanged"]
    assert sorted(stored_rows(tmp_path)) == sorted(got_rows)


def test_index_on_an_unreachable_scheduler_fails_in_seconds_naming_it(tmp_path: Path, folder: Path):
    result, elapsed = index(tmp_path, folder, "--dask", "tcp://127.0.0.1:1", sets=("compute.connect_timeout_s=2",))
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "tcp://127.0.0.1:1" in lines[0] and "compute.dask_address" in lines[0], result.stderr
    assert elapsed < 15
    assert not (tmp_path / "milvus.db").exists(), "the store was opened before the scheduler was checked"


def test_a_malformed_dask_address_is_a_config_error(tmp_path: Path, folder: Path):
    result, _ = index(tmp_path, folder, "--dask", "bogus")
    assert result.exit_code == 2 and "--dask 'bogus'" in result.stderr, result.stderr
    assert not (tmp_path / "milvus.db").exists()
