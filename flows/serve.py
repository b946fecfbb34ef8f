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
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def local_prefect_server(command: list[str], url: str, timeout_s: float = 90) -> Iterator[str]:
    """Run ``command`` (``prefect server start``) until the block ends; yields its API URL ``url``.

    The process is started inside the ``try``: a server that never becomes healthy is stopped too.
    """
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
    logging.basicConfig(level=logging.INFO)
    settings = load_settings()
    api = settings.schedule.prefect_api_url

    def run() -> None:
        # flow.serve, not prefect.serve(deployment): the runner keeps this flow object, retries included
        scheduled_flow(settings).serve(name=settings.schedule.deployment_name, cron=settings.schedule.cron)

    if os.environ.get("PREFECT_API_URL"):
        run()
        return
    if running_prefect_api(api):
        log.info("using the Prefect server at %s", api)
        os.environ["PREFECT_API_URL"] = api
        run()
        return
    where = urlsplit(api)
    log.info("PREFECT_API_URL is not set: starting a local Prefect server (UI at %s://%s)", where.scheme, where.netloc)
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", where.hostname or "127.0.0.1", "--port", str(where.port or 4200)]
    with local_prefect_server(command, url=api) as url:
        os.environ["PREFECT_API_URL"] = url
        run()


if __name__ == "__main__":
    main()
