"""Reliability: promotion under search load, kill -9 mid-run, Milvus unreachable or stopped mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from facesearch.errors import StoreUnavailableError
from facesearch.ingest.images import load_image
from facesearch.ingest.indexer import CHUNK_IMAGES, index_jobs, plan_jobs
from facesearch.pipeline.promote import promote
from facesearch.pipeline.sweep import Trial
from facesearch.serve.query import QueryService
from facesearch.serve.serving import ingest_collection
from facesearch.settings import load_settings, parse_overrides
from facesearch.store import FaceRecord, FaceStore
from tests.clihelpers import Cli
from tests.conftest import target_overrides

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_searches_never_fail_while_promotion_moves_the_alias(settings, store, johns: Path, dlib_encoder):
    people = ("John_Simm", "John_Salley", "John_Savage")
    jobs, _ = plan_jobs([johns / p for p in people], settings, identity_from_folder=True)
    old = ingest_collection(store, settings, dlib_encoder)
    index_jobs(jobs, settings, store, dlib_encoder, old)
    new = store.collection_name(dlib_encoder.encoder_id, "candidate")
    store.ensure_collection(new, dlib_encoder.dim, settings.index)
    copies = [FaceRecord(**{**r.__dict__, "identity": r.identity + "@new"}) for r in store.records(old, "face_index >= 0")]
    store.upsert(new, copies)

    query = load_image(sorted((johns / "John_Simm").glob("*.jpg"))[-1], settings.images)
    service = QueryService(settings)
    service.search(query, k=5)  # load the encoder before the clock starts
    answers: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        while not stop.is_set():
            try:
                hits = service.search(query, k=5)["faces"][0]["hits"]
                assert len(hits) == 5, f"half a result: {hits}"
                answers.append(hits[0]["identity"])
            except BaseException as exc:  # noqa: BLE001 - every failure counts
                errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()

    def wait_for_answers(count: int) -> None:
        """Searches take 0.2-2 s here depending on the machine's load: wait for answers, not for a fixed time."""
        deadline = time.monotonic() + 60
        while len(answers) < count and not errors and time.monotonic() < deadline:
            time.sleep(0.05)

    wait_for_answers(1)
    before = len(answers)
    promotion = promote(store, settings, new, Trial(8, 8, 1.0, 1.0, 1.0, 1.0, 0.1), "test")
    # each of the 3 threads has at most one search in flight from before the promotion: the 4th answer after it
    # comes from a search that started after it
    wait_for_answers(len(answers) + 4)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    service.close()
    print(f"\n{len(answers)} searches during promotion, {len(errors)} failed")
    assert errors == []
    assert promotion.previous == old and store.alias_target(settings.milvus.alias) == new
    assert set(answers) <= {"John_Simm", "John_Simm@new"}
    assert answers[0] == "John_Simm" and answers[-1] == "John_Simm@new"
    assert before > 0 and len(answers) > before


def _cli_proc(target: dict[str, str], *args: str) -> subprocess.Popen:
    sets = [a for o in [*target_overrides(target), "encoder.backend=dlib", "index.nlist=16"] for a in ("--set", o)]
    return subprocess.Popen(
        [sys.executable, "-m", "facesearch.cli", "-v", *sets, *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
    )


def _wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 300) -> list[str]:
    seen, deadline = [], time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"never saw {needle!r}:\n{''.join(seen[-30:])}")


def _rows(target: dict[str, str]) -> dict[int, tuple]:
    settings = load_settings(overrides=parse_overrides(target_overrides(target)))
    with FaceStore(settings.milvus) as store:
        collection = store.resolve("face_search")
        rows = store.query(collection, "face_index >= 0", ["id", "image_sha256", "face_index", "identity", "image_paths"])
    if settings.milvus.is_local_lite:  # let the next process take the Lite data dir's lock
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_all()
    by_id = {r["id"]: (r["image_sha256"], r["face_index"], r["identity"], tuple(sorted(r["image_paths"]))) for r in rows}
    assert len(by_id) == len(rows), "duplicate primary keys"
    return by_id


def test_index_killed_mid_run_then_rerun_equals_a_clean_run(tmp_path: Path, samples: Path, milvus_target, milvus_server):
    # two people, 22 files (6 chunks; John_Shimkus has a byte-identical pair): the kill after chunk 3 still lands
    # part-way, with less than half of the 55 photos to embed three times over
    folder = tmp_path / "photos"
    for person in ("John_Salley", "John_Shimkus"):
        shutil.copytree(samples / "johns" / person, folder / person)
    proc = _cli_proc(milvus_target, "index", str(folder), "--identity-from-folder", "--json")
    _wait_for_line(proc, "chunk 3 written")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    partial = _rows(milvus_target)

    # the kill needs a process of its own; the re-run and the clean run are the same CLI in this one (no start-up)
    rerun = Cli(milvus_target)("index", str(folder), "--identity-from-folder", "--json")
    assert rerun.exit_code == 0, rerun.stderr[-2000:]
    assert rerun.json["images_unchanged"] >= 3 * CHUNK_IMAGES - 1  # the chunks written before the kill were not redone

    if milvus_server is None:
        clean_target = {"uri": str(tmp_path / "clean" / "faces.db"), "db_name": ""}
    else:
        from pymilvus import MilvusClient

        clean_target = {"uri": milvus_server.uri, "db_name": milvus_target["db_name"] + "_clean"}
        MilvusClient(uri=milvus_server.uri).create_database(clean_target["db_name"])
    clean = Cli(clean_target)("index", str(folder), "--identity-from-folder", "--json")
    assert clean.exit_code == 0, clean.stderr[-2000:]
    complete = _rows(clean_target)
    assert 0 < len(partial) < len(complete), "the kill should land part-way through"
    assert _rows(milvus_target) == complete


def test_unreachable_milvus_is_a_clear_error_after_bounded_retries():
    settings = load_settings(overrides={"milvus": {"uri": "http://127.0.0.1:9", "retries": 2, "retry_backoff_s": 0.2, "timeout_s": 2}})
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as err:
        FaceStore(settings.milvus)
    elapsed = time.monotonic() - started
    assert "http://127.0.0.1:9" in str(err.value)
    assert 0.2 + 0.4 <= elapsed < 3 * (2 + 1) + 0.6 + 5  # both backoffs waited, each attempt bounded by timeout_s


@pytest.mark.milvus_server
def test_server_stopped_mid_index_then_restarted_loses_nothing(tmp_path: Path, samples: Path):
    """A Milvus of our own for this test: stop it while a CLI index run writes, restart, re-run."""
    from facesearch.store.local_server import LocalMilvusServer

    base = tmp_path / "server"
    server = LocalMilvusServer(base, stop_timeout_s=5).start()
    try:
        target = {"uri": server.uri, "db_name": ""}
        proc = _cli_proc(target, "--set", "milvus.timeout_s=5", "--set", "milvus.retries=1", "index", str(samples / "johns"), "--json")
        _wait_for_line(proc, "chunk 2 written")
        server.stop()
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1
        final = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(final) == 1 and target["uri"] in final[0], err[-2000:]  # one line naming the server
        server.start()  # same data directory, new ports
        target = {"uri": server.uri, "db_name": ""}
        rerun = _cli_proc(target, "index", str(samples / "johns"), "--json")
        out, err = rerun.communicate(timeout=600)
        assert rerun.returncode == 0, err[-2000:]
        rows = _rows(target)
        assert len({v[0] for v in rows.values()}) == 54  # 55 files, two of them byte-identical
    finally:
        server.stop()


@pytest.mark.single_session
def test_reindex_killed_mid_sweep_leaves_the_alias_on_a_complete_collection(tmp_path: Path, samples: Path, milvus_target, prefect_server: str):
    from tests.integration.test_pipeline import make_project, overrides_for

    project = make_project(tmp_path, samples, people=2, per_person=4)
    # the session's running Prefect server: three runs, no temporary server started (and migrated) per run
    ov = overrides_for(project, milvus_target, f"schedule.prefect_api_url={prefect_server}")
    sets = [a for o in ov for a in ("--set", o)]
    env = {**os.environ, "COLUMNS": "200", "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}

    def reindex(verbose: bool = False) -> subprocess.Popen:
        args = [sys.executable, "-m", "facesearch.cli", *(["-v"] if verbose else []), *sets, "reindex", "--json"]
        # its own session, so a kill takes every process it started down with it
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    first = reindex()
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    serving = json.loads(out)["promotion"]["collection"]
    settings = load_settings(overrides=parse_overrides(ov))
    with FaceStore(settings.milvus) as store:
        faces = store.count(serving)
    _release_lite(settings)

    new_person = sorted(p for p in (samples / "johns").iterdir() if p.is_dir())[3]
    target_dir = project / "data" / "images" / "people" / new_person.name
    target_dir.mkdir(parents=True)
    for photo in sorted(new_person.glob("*.jpg"))[:3]:
        (target_dir / photo.name).write_bytes(photo.read_bytes())
    doomed = reindex(verbose=True)
    _wait_for_line(doomed, "nlist=", timeout=600)  # the sweep is building and measuring indexes
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=30)

    with FaceStore(settings.milvus) as store:
        assert store.alias_target("face_search") == serving
        assert store.count(serving) == faces
        assert store.index_info(serving).nlist is not None
    _release_lite(settings)
    again = reindex()
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    doc = json.loads(out)
    assert doc["status"] == "promoted" and doc["promotion"]["previous"] == serving
    assert doc["embed"]["images_embedded"] == 0  # the killed run had already cached the 3 new embeddings


def _release_lite(settings) -> None:
    if settings.milvus.is_local_lite:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_all()
