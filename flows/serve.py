"""Scheduled re-index: ``make schedule`` (``python -m flows.serve``) serves the reindex flow on ``schedule.cron``.

Prefect only schedules against a real API server. If ``PREFECT_API_URL`` is not set, this starts
``prefect server start`` on 127.0.0.1:4200 for the lifetime of the command, so one command gives a
working schedule and a UI at http://127.0.0.1:4200 where the runs appear.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from facesearch.settings import Settings, load_settings
from flows.reindex import reindex_flow

log = logging.getLogger("flows.serve")
LOCAL_API = "http://127.0.0.1:4200/api"


def deployment(settings: Settings) -> Any:
    """The scheduled deployment of the re-index flow (name and cron from settings)."""
    return reindex_flow.to_deployment(name=settings.schedule.deployment_name, cron=settings.schedule.cron)


def _wait_healthy(url: str, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"Prefect server at {url} did not become healthy in {timeout_s:.0f} s")


@contextmanager
def local_prefect_server(command: list[str] | None = None, url: str = LOCAL_API, timeout_s: float = 90) -> Iterator[str]:
    """Run ``command`` (``prefect server start`` on 127.0.0.1:4200) until the block ends; yields its API URL.

    The process is started inside the ``try``: a server that never becomes healthy is stopped too.
    """
    command = command or [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", "4200"]
    server = subprocess.Popen(command)
    try:
        _wait_healthy(url, timeout_s)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log.warning("Prefect server (pid %d) ignored SIGTERM for 30 s: killing it", server.pid)
            server.kill()
            server.wait()


def main() -> None:
    from prefect import serve

    logging.basicConfig(level=logging.INFO)
    settings = load_settings()
    if os.environ.get("PREFECT_API_URL"):
        serve(deployment(settings))
        return
    log.info("PREFECT_API_URL is not set: starting a local Prefect server (UI at http://127.0.0.1:4200)")
    with local_prefect_server() as url:
        os.environ["PREFECT_API_URL"] = url
        serve(deployment(settings))


if __name__ == "__main__":
    main()
