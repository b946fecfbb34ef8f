"""Embedding fanned out on a real Dask ``LocalCluster`` (2 worker processes) through Prefect's DaskTaskRunner.

The distributed re-index must store exactly the rows of the in-process one, also when a worker process is
killed mid-run; an unreachable scheduler must fail in seconds with one line naming it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from facesearch.settings import load_settings, parse_overrides
from facesearch.store import FaceStore
from tests.integration.test_pipeline import make_project, overrides_for

pytestmark = [pytest.mark.integration, pytest.mark.single_session]

DASK = ["encoder.backend=sface", "compute.dask_address=local", "compute.workers=2", "compute.shard_images=2"]


def served_rows(overrides: list[str]) -> dict[int, np.ndarray]:
    settings = load_settings(overrides=parse_overrides(overrides))
    with FaceStore(settings.milvus) as store:
        target = store.alias_target(settings.milvus.alias)
        rows = store.query(target, "face_index >= 0", ["id", "embedding"])
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate primary keys"
    return {r["id"]: np.asarray(r["embedding"], dtype=np.float32) for r in rows}


@pytest.fixture(scope="module")
def in_process_rows(tmp_path_factory: pytest.TempPathFactory, samples: Path, prefect_harness) -> dict[int, np.ndarray]:
    from flows.reindex import reindex_flow

    tmp = tmp_path_factory.mktemp("in-process")
    project = make_project(tmp, samples)
    ov = overrides_for(project, {"uri": str(tmp / "milvus.db"), "db_name": ""}, "encoder.backend=sface")
    result = reindex_flow(overrides=ov)
    assert result["status"] == "promoted" and result["embed"]["workers"] == "in-process"
    return served_rows(ov)


def assert_same_rows(got: dict[int, np.ndarray], want: dict[int, np.ndarray]) -> None:
    assert sorted(got) == sorted(want) and len(want) >= 14
    for key, vector in want.items():
        assert np.allclose(got[key], vector, atol=1e-5), key


def test_distributed_reindex_stores_the_rows_of_the_in_process_one(tmp_path: Path, samples: Path, prefect_harness, in_process_rows):
    from flows.reindex import reindex_flow

    project = make_project(tmp_path, samples)
    ov = overrides_for(project, {"uri": str(tmp_path / "milvus.db"), "db_name": ""}, *DASK)
    api_url_before, omp_before = os.environ.get("PREFECT_API_URL"), os.environ.get("OMP_NUM_THREADS")
    result = reindex_flow(overrides=ov)
    assert result["status"] == "promoted"
    assert result["embed"]["workers"] == "local" and result["embed"]["shards"] == 7 and result["embed"]["images_embedded"] == 14
    # distributed's nanny writes the workers' environment into this process: it must not outlive the run
    assert os.environ.get("PREFECT_API_URL") == api_url_before and os.environ.get("OMP_NUM_THREADS") == omp_before
    assert_same_rows(served_rows(ov), in_process_rows)
    parts = list((project / "data" / "embeddings").rglob("part-*.parquet"))
    assert len(parts) == 2 * 7  # faces + images part per shard, nothing twice
    again = reindex_flow(overrides=ov)  # every shard is in the cache: nothing to embed, nothing to promote
    assert again["status"] == "unchanged" and again["embed"]["images_embedded"] == 0


def worker_pids() -> list[int]:
    """Dask's worker processes: spawned children of this process (LocalCluster with processes=True)."""
    import psutil

    pids = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.Error:
            continue
    return pids


def test_a_worker_killed_mid_run_loses_nothing_and_duplicates_nothing(tmp_path: Path, samples: Path, prefect_harness, in_process_rows):
    from flows.reindex import reindex_flow

    project = make_project(tmp_path, samples)
    ov = overrides_for(project, {"uri": str(tmp_path / "milvus.db"), "db_name": ""}, *DASK)
    images_parts = project / "data" / "embeddings" / "sface-2021dec" / "images"
    killed: list[int] = []

    def kill_one_worker_after_the_first_shard() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            pids = worker_pids()
            if len(pids) >= 2 and images_parts.is_dir() and any(images_parts.glob("part-*.parquet")):
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_worker_after_the_first_shard, daemon=True)
    killer.start()
    result = reindex_flow(overrides=ov)
    killer.join(timeout=5)
    assert killed, "no worker was killed: the run ended before the first shard was written"
    assert result["status"] == "promoted" and result["embed"]["images_embedded"] <= 14
    assert_same_rows(served_rows(ov), in_process_rows)


def test_an_unreachable_scheduler_fails_in_seconds_naming_it(tmp_path: Path, johns: Path):
    import shutil

    from typer.testing import CliRunner

    from facesearch.cli import app

    shutil.copy(next(johns.glob("*/*.jpg")), tmp_path / "one.jpg")  # photos to index: the scheduler is the only problem

    args = [
        "--set",
        "compute.dask_address=tcp://127.0.0.1:1",
        "--set",
        "compute.connect_timeout_s=2",
        "--set",
        f"paths.images_dir={tmp_path}",
        "--set",
        f"milvus.uri={tmp_path / 'm.db'}",
    ]
    started = time.monotonic()
    result = CliRunner().invoke(app, [*args, "reindex"])
    elapsed = time.monotonic() - started
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "tcp://127.0.0.1:1" in lines[0] and "compute.dask_address" in lines[0], result.stderr
    assert elapsed < 20


def test_local_workers_get_one_blas_thread_and_no_profiler():
    """The workers FaceSearch spawns run one BLAS thread and no stack profiler (100 samples/s of the task thread)."""
    import dask
    from distributed import Client, LocalCluster

    from facesearch.pipeline.compute import dask_config

    with dask_config(threads=1), LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, Client(cluster) as client:
        seen = client.run(lambda: (dask.config.get("distributed.worker.profile.enabled"), os.environ.get("OMP_NUM_THREADS")))
        profiles = client.run(lambda dask_worker: len(dask_worker.profile_history) + len(dask_worker.profile_recent.get("children", {})))
    assert list(seen.values()) == [(False, "1")]
    assert list(profiles.values()) == [0]
    assert dask.config.get("distributed.worker.profile.enabled") is True  # this process's config is left as it was
