"""Logging to stderr for the CLI and scripts; library modules only call ``logging.getLogger``."""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

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
    # MLflow configures its own loggers at import ("Creating initial MLflow database tables...") and draws
    # download progress bars; both are third-party noise on the terminal unless -v
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "true" if verbose else "false")
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
    # MLFLOW_LOGGING_LEVEL only counts before mlflow's first import; its own handler sits on this logger
    logging.getLogger("mlflow").setLevel(logging.INFO if verbose else logging.WARNING)


# faiss's k-means (Milvus Lite's IVF index build) warns from C++ straight to stderr on small training sets.
NATIVE_NOISE = re.compile(r"^WARNING clustering \d+ points to \d+ centroids")
_native = logging.getLogger("facesearch.native")
_capture_lock = threading.Lock()


@contextmanager
def native_stderr_to_log(noise: re.Pattern[str] = NATIVE_NOISE) -> Iterator[None]:
    """Capture what native code writes to file descriptor 2 inside the block; ``noise`` lines go to the log at DEBUG.

    Python's logging cannot see a C++ ``fprintf(stderr)``, so fd 2 itself points at a temporary file
    for the block. Any other line (a real native error, or another thread's output) is written back
    to stderr afterwards, late but not lost. Nested or concurrent blocks capture once.
    """
    if not _capture_lock.acquire(blocking=False):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                for line in tmp.read().decode(errors="replace").splitlines():
                    if noise.search(line):
                        _native.debug("%s", line)
                    elif line.strip():
                        os.write(2, f"{line}\n".encode())
    finally:
        _capture_lock.release()
