"""Where compute runs: the Dask task runner for ``compute.dask_address`` and a fast check that it is reachable."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from facesearch.errors import ComputeUnavailableError
from facesearch.settings import ComputeSettings

# Workers run one inference thread each (compute.threads_per_worker); the BLAS pools must not fan out.
# Only these are set: distributed's default MALLOC_TRIM_THRESHOLD_ made numpy-heavy work ~1.6x slower.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def dask_config(api_url: str | None = None, threads: int = 1) -> Iterator[None]:
    """Dask settings for the workers this run starts: thread limits, the Prefect API to report to, no profiler."""
    import dask
    import distributed  # noqa: F401  (load its config defaults first: leaving set() would drop a tree it first saw inside)

    environ: dict[str, Any] = {name: threads for name in THREAD_ENV}
    if api_url:
        environ["PREFECT_API_URL"] = api_url
    # The nanny writes these into *this* process's os.environ before spawning a worker and never restores
    # them: a later subprocess would inherit a dead Prefect API URL and one-thread BLAS. Put them back.
    touched = [*environ, "PYTHONHASHSEED"]
    before = {name: os.environ.get(name) for name in touched}
    try:
        # The worker profiler samples the task thread's stack 100 times a second for the dashboard's Profile tab:
        # ~0.02 core per busy worker, measured (bench/orch_cpu.py), for a page only bokeh users see.
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ, "distributed.worker.profile.enabled": False}):
            yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def dask_task_runner(compute: ComputeSettings) -> Any:
    """prefect-dask's runner: a LocalCluster started for the run (``local``) or an existing scheduler."""
    from prefect_dask import DaskTaskRunner

    if compute.dask_address == "local":
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={"n_workers": compute.workers, "threads_per_worker": compute.threads_per_worker, "processes": True, "dashboard_address": ":0"},
        )
    return DaskTaskRunner(address=compute.dask_address, client_kwargs={"timeout": f"{compute.connect_timeout_s}s"})


def require_scheduler(compute: ComputeSettings) -> None:
    """Fail in ``compute.connect_timeout_s`` with one line naming the address when an existing scheduler is unreachable."""
    if compute.dask_address in ("", "local"):
        return
    from distributed import Client

    try:
        with Client(compute.dask_address, timeout=compute.connect_timeout_s):
            pass
    except (OSError, TimeoutError) as exc:
        raise ComputeUnavailableError(
            f"cannot reach the Dask scheduler at {compute.dask_address} (compute.dask_address) within {compute.connect_timeout_s:g} s: {exc}"
        ) from exc
