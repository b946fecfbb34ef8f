"""Helpers shared by the flows: settings from flow parameters, finding a running Prefect server."""

from __future__ import annotations

import logging
import urllib.request
from pathlib import Path

from facesearch.settings import Settings, load_settings, parse_overrides

log = logging.getLogger(__name__)


def flow_settings(config: list[str] | None, overrides: list[str] | None) -> Settings:
    """Flow parameters are plain strings (config files, ``section.key=value``) so runs are reproducible from the UI."""
    quiet_task_logs()
    return load_settings([Path(p) for p in config or []], parse_overrides(list(overrides or [])))


def quiet_task_logs() -> None:
    """One "Finished in state Completed()" line per task buries a run's own summary on the terminal.

    The task states stay in the Prefect UI, and -v (facesearch at DEBUG) brings the lines back.
    """
    if not logging.getLogger("facesearch").isEnabledFor(logging.DEBUG):
        logging.getLogger("prefect.task_runs").setLevel(logging.WARNING)


def running_prefect_api(url: str, timeout_s: float = 2.0) -> str | None:
    """``url`` if a Prefect API server answers its health check there, else None (no server: refused at once)."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout_s) as response:
            return url if response.status == 200 else None
    except OSError as exc:
        log.debug("no Prefect server at %s: %s", url, exc)
        return None
