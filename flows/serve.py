"""Scheduled re-index: ``make schedule`` (``python -m flows.serve``) serves the reindex flow on ``schedule.cron``.

Prefect only schedules against a real API server. If ``PREFECT_API_URL`` is not set, a server
already answering at ``schedule.prefect_api_url`` (``make prefect-ui``) is used, else this starts
``prefect server start`` there for the lifetime of the command, so one command gives a working
schedule and a UI where the runs appear. A failed scheduled run is retried ``schedule.retries``
times (Prefect flow retries); a failed run never moves the serving alias.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from facesearch.settings import Settings, load_settings
from flows.common import running_prefect_api
from flows.reindex import reindex_flow

log = logging.getLogger("flows.serve")


def scheduled_flow(settings: Settings) -> Any:
    """The re-index flow as the schedule runs it: a failed run is retried (``schedule.retries``)."""
    return reindex_flow.with_options(retries=settings.schedule.retries, retry_delay_seconds=settings.schedule.retry_delay_s)


def deployment(settings: Settings) -> Any:
    """The scheduled deployment of the re-index flow (name and cron from settings)."""
    return scheduled_flow(settings).to_deployment(name=settings.schedule.deployment_name, cron=settings.schedule.cron)


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
    logging.basicConfig(level=logging.INFO)
    settings = load_settings()
    api = settings.schedule.prefect_api_url
    server = None
    if not os.environ.get("PREFECT_API_URL") and running_prefect_api(api):
        log.info("using the Prefect server at %s", api)
        os.environ["PREFECT_API_URL"] = api
    elif not os.environ.get("PREFECT_API_URL"):
        where = urlsplit(api)
        log.info("PREFECT_API_URL is not set: starting a local Prefect server (UI at %s://%s)", where.scheme, where.netloc)
        server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", where.hostname or "127.0.0.1",
                                   "--port", str(where.port or 4200)])
        os.environ["PREFECT_API_URL"] = api
    try:
        if server is not None:
            _wait_healthy(api)
        # flow.serve, not prefect.serve(deployment): the runner keeps this flow object, retries included
        scheduled_flow(settings).serve(name=settings.schedule.deployment_name, cron=settings.schedule.cron)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
