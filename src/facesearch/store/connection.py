"""The pymilvus client: connecting (Lite path or server URI), bounded retries of transient errors, error wrapping."""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from facesearch.errors import CollectionNotFoundError, StoreBusyError, StoreError, StoreUnavailableError
from facesearch.settings import MilvusSettings
from facesearch.store.moved import server_uri_for

log = logging.getLogger(__name__)


T = TypeVar("T")


def is_transient(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("unavailable", "deadline", "connection refused", "connect", "timeout", "timed out"))


def with_retries(
    call: Callable[[], T],
    settings: MilvusSettings,
    operation: str,
    fail: Callable[[Exception, bool], StoreError],
    *,
    attempts: int | None = None,
    transient: Callable[[Exception], bool] = is_transient,
) -> T:
    """The one retry layer of the store: ``call()`` with exponential backoff on transient errors.

    ``attempts`` defaults to ``milvus.retries + 1``. A non-transient error, or the last failure,
    is raised as ``fail(exc, was_transient)``; a :class:`StoreError` raised inside passes through.
    """
    attempts = settings.retries + 1 if attempts is None else max(1, attempts)
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except StoreError:
            raise
        except Exception as exc:
            retry = transient(exc)
            if not retry or attempt == attempts:
                raise fail(exc, retry) from exc
            delay = settings.retry_backoff_s * 2 ** (attempt - 1)
            log.warning("Milvus %s failed (%s); retry %d/%d in %.1fs", operation, first_line(exc), attempt, attempts - 1, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def retrying(method: Callable[..., T]) -> Callable[..., T]:
    """A store method through :func:`with_retries`: Milvus errors become :class:`StoreError`."""

    @functools.wraps(method)
    def wrapper(self: StoreConnection, *args: Any, **kwargs: Any) -> T:
        return self.call(method.__name__, lambda: method(self, *args, **kwargs))

    return wrapper


def quiet_pymilvus_logging() -> None:
    """pymilvus logs a traceback for every failed RPC; we report errors ourselves.

    Call after importing pymilvus: its import runs ``logging.config.dictConfig`` and resets levels.
    """
    for name in ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer", "grpc._server"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def skip_scipy_sparse_probe() -> None:
    """Spare the first search pymilvus' import of ``scipy.sparse`` (0.2 s cold).

    pymilvus imports ``scipy.sparse`` on its first search only to ask whether the query vectors are a
    scipy sparse matrix. Ours never are (dense float lists), and none can exist before ``scipy.sparse``
    is imported; so while it is not, tell pymilvus' probe that it has checked and found no scipy.
    """
    if "scipy.sparse" in sys.modules:
        return
    try:
        from pymilvus.client.utils import SciPyHelper
    except ImportError:  # a pymilvus without the probe: nothing to skip
        return
    if not getattr(SciPyHelper, "_checked", True):
        SciPyHelper._checked = True  # its _matrix_available / _array_available stay False


def lite_dir_locked(data_dir: Path) -> bool:
    """True when another process holds Milvus Lite's flock on ``data_dir/LOCK``."""
    import fcntl

    lock_file = data_dir / "LOCK"
    if not lock_file.exists():
        return False
    fd = os.open(lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class StoreConnection:
    """One open ``MilvusClient`` for the given settings; the mixins of :class:`FaceStore` build on it."""

    def __init__(self, settings: MilvusSettings) -> None:
        self.settings = settings
        self._loaded: set[str] = set()
        self._packs_hits: dict[str, bool] = {}  # collection or alias -> has HIT_JSON (CollectionsMixin.packs_hits)
        self._stub_searcher: Any = None  # built on first server search (stub_searcher)
        self.uri = settings.uri  # where this client is connected: a moved Lite store's standalone (store/moved.py)
        self._client = self._connect()

    @property
    def on_lite(self) -> bool:
        """True when this client runs Milvus Lite in-process (a Lite path that has not moved to a server)."""
        return self.settings.is_local_lite and self.uri == self.settings.uri

    # -- connection -------------------------------------------------------------------------
    def _connect(self) -> Any:
        from pymilvus import MilvusClient

        quiet_pymilvus_logging()
        skip_scipy_sparse_probe()
        uri = self.settings.uri
        if self.settings.is_local_lite and (moved := server_uri_for(uri)) is not None:
            self.uri = uri = moved
        if self.on_lite:
            if not uri.endswith(".db"):
                raise StoreError(f"milvus.uri {uri!r}: a Milvus Lite path must end in .db (or use http://host:port)")
            Path(uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
            uri = str(Path(uri).expanduser())
        attempts = 1 if self.on_lite else None  # a local file: retrying cannot help

        # The probe: list_collections also proves db_name exists; on Lite it opens every collection (all
        # their segments), so in Lite's default database, which always exists, ask for the version instead.
        cheap_probe = self.on_lite and not self.settings.db_name

        def connect() -> Any:
            client = MilvusClient(uri=uri, token=self.settings.token, db_name=self.settings.db_name, timeout=self.settings.timeout_s)
            if cheap_probe:
                client.get_server_version()
            else:
                client.list_collections()
            return client

        def fail(exc: Exception, _transient: bool) -> StoreError:
            if self.on_lite and lite_dir_locked(Path(uri)):
                return StoreBusyError(
                    f"Milvus Lite data dir {uri} is in use by another process (one process per data dir); "
                    "wait for it, or share one store between processes: `facesearch store start` runs a local "
                    "Milvus server, then set milvus.uri to the URI it prints"
                )
            return StoreUnavailableError(f"cannot reach Milvus at {self.uri}: {first_line(exc)}")

        return with_retries(connect, self.settings, "connect", fail, attempts=attempts, transient=lambda _exc: True)

    def call(self, operation: str, func: Callable[[], T]) -> T:
        """Run ``func`` (which uses the client) with the store's retries; Milvus errors become :class:`StoreError`."""

        def fail(exc: Exception, transient: bool) -> StoreError:
            if transient:
                return StoreUnavailableError(f"Milvus at {self.uri} failed {operation} after retries: {first_line(exc)}")
            return self._wrap(exc, operation)

        return with_retries(func, self.settings, operation, fail)

    @property
    def stub_searcher(self) -> Any:
        """A :class:`~facesearch.store.stub_search.StubSearcher` on this client (servers only), else None."""
        if self.on_lite or not self.settings.stub_search:
            return None
        searcher = self._stub_searcher
        if searcher is None or searcher.client is not self._client:
            from facesearch.store.stub_search import StubSearcher

            searcher = self._stub_searcher = StubSearcher(self._client, self.settings.db_name, self.settings.timeout_s)
        return searcher

    @property
    def client(self) -> Any:
        """The underlying ``MilvusClient``: use it inside :meth:`call` (retries, StoreError), never bare."""
        return self._client

    def close(self) -> None:
        try:
            self._client.close()
        except Exception as exc:  # closing a dead connection must not mask the real error
            log.debug("ignoring error on close: %s", exc)

    def __enter__(self) -> StoreConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wrap(self, exc: Exception, operation: str) -> StoreError:
        text = first_line(exc)
        if "not exist" in text.lower() or "not found" in text.lower():
            return CollectionNotFoundError(f"{operation}: {text}")
        return StoreError(f"Milvus at {self.uri} failed {operation}: {text}")
