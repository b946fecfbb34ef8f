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


def main() -> None:
    from prefect import serve

    logging.basicConfig(level=logging.INFO)
    settings = load_settings()
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        log.info("PREFECT_API_URL is not set: starting a local Prefect server (UI at http://127.0.0.1:4200)")
        server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", "4200"])
        _wait_healthy(LOCAL_API)
        os.environ["PREFECT_API_URL"] = LOCAL_API
    try:
        serve(deployment(settings))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
