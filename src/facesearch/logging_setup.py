"""Logging to stderr for the CLI and scripts; library modules only call ``logging.getLogger``."""

from __future__ import annotations

import logging
import os

NOISY_LOGGERS = ("pymilvus", "milvus_lite", "urllib3", "httpx", "PIL", "matplotlib", "filelock", "git")
# Third-party INFO chatter (Prefect's temporary-server banner, Dask's cluster life cycle): DEBUG-only on the terminal.
CHATTY_PREFIXES = ("prefect.server", "prefect.task_runner", "distributed")
CHATTY_EXACT = ("prefect",)


class QuietThirdParty(logging.Filter):
    """Drop INFO and below from chatty third-party loggers, unless the user asked for -v."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        name = record.name
        return not (name in CHATTY_EXACT or name.startswith(CHATTY_PREFIXES))


def configure_logging(level: str = "INFO", verbose: int = 0) -> None:
    """Route logs to stderr (rich if available); ``verbose`` >= 1 means DEBUG for facesearch."""
    from rich.logging import RichHandler

    effective = "DEBUG" if verbose else os.environ.get("FACESEARCH_LOG_LEVEL", level)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_facesearch", False):
            root.removeHandler(handler)
    handler = RichHandler(show_path=False, rich_tracebacks=True, markup=False, log_time_format="[%X]")
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    handler._facesearch = True  # type: ignore[attr-defined]
    if not verbose:
        handler.addFilter(QuietThirdParty())
    from rich.console import Console

    handler.console = Console(stderr=True)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("facesearch").setLevel(effective)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR if not verbose else logging.WARNING)
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
