"""Scheduled re-index: ``python -m flows.serve`` serves the reindex flow on ``schedule.cron``.

See runs in the Prefect UI: ``prefect server start --host 127.0.0.1`` and, in the shell that runs
this, ``PREFECT_API_URL=http://127.0.0.1:4200/api``.
"""

from __future__ import annotations

from facesearch.settings import load_settings
from flows.reindex import reindex_flow


def main() -> None:
    settings = load_settings()
    reindex_flow.serve(name=settings.schedule.deployment_name, cron=settings.schedule.cron)


if __name__ == "__main__":
    main()
