"""Per-app state: the QueryService opened once, concurrency limiters, the health document."""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Request

from facesearch.errors import (
    EncoderMismatchError,
    StoreBusyError,
    StoreError,
    StoreUnavailableError,
    WeightsMissingError,
)
from facesearch.serve.api.auth import redact_uri
from facesearch.settings import Settings

if TYPE_CHECKING:
    from facesearch.serve.query import QueryService

log = logging.getLogger(__name__)


T = TypeVar("T")


# -- state -----------------------------------------------------------------------------------------
REQUEST_CONNECT_WAIT_S = 1.0  # a request waits this long for a (re)connect in progress, then answers 503


class Services:
    """The QueryService, opened once; reopened on demand when Milvus was down at start-up.

    Connecting (with the store's retries) runs in one background thread; no lock is held across it,
    so while Milvus is down every request waits at most ``REQUEST_CONNECT_WAIT_S`` and answers 503.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()  # guards the fields below; never held across I/O
        self._service: "QueryService | None" = None
        self._connecting: threading.Event | None = None
        self._last_error: StoreError | None = None
        self._closed = False

    def get(self, wait_s: float | None = REQUEST_CONNECT_WAIT_S) -> "QueryService":
        """The open :class:`QueryService` (StoreUnavailableError/StoreBusyError if Milvus cannot be reached).

        ``wait_s``: how long to wait for a connect in progress (None: until it ends).
        """
        with self._lock:
            if self._service is not None:
                return self._service
            done = self._connecting
            if done is None:
                done = self._connecting = threading.Event()
                threading.Thread(target=self._connect, args=(done,), name="milvus-connect", daemon=True).start()
        done.wait(wait_s)
        with self._lock:
            if self._service is not None:
                return self._service
            error = self._last_error if done.is_set() else None
        if error is not None:
            raise type(error)(str(error))  # a fresh exception per request thread
        raise StoreUnavailableError(f"connecting to Milvus at {redact_uri(self.settings.milvus.uri)}; try again shortly")

    def _connect(self, done: threading.Event) -> None:
        from facesearch.serve.query import QueryService

        service, error = None, None
        try:
            service = QueryService(self.settings)
        except StoreError as exc:
            error = exc
        except Exception as exc:  # the thread must report whatever went wrong
            log.exception("connecting to Milvus failed")
            error = StoreError(f"cannot open the store: {exc}")
        with self._lock:
            if service is not None and self._closed:
                service.close()
            elif service is not None:
                self._service = service
            self._last_error = error
            self._connecting = None
        done.set()

    def warm_up(self) -> None:
        """Connect and load the models when something is indexed; tolerate an empty or unreachable store."""
        try:
            service = self.get(wait_s=None)
            target = service.store.alias_target(self.settings.milvus.alias)
        except (StoreUnavailableError, StoreBusyError) as exc:
            log.error("Milvus not available at start-up (%s); /health reports degraded until it is", exc)
            return
        if target is None:
            log.warning("nothing indexed yet behind alias %s: /search answers 404 until photos are indexed", self.settings.milvus.alias)
            return
        try:
            encoder = service.encoder
        except (EncoderMismatchError, WeightsMissingError) as exc:  # the alias may move back: serve 503s with the reason
            log.error("cannot load the encoder of %s (%s); /search and /identify answer 503 until it can", target, exc)
            return
        encoder.load()  # models load lazily: pay for the weights now, not on the first request
        log.info("serving %s -> %s with encoder %s", self.settings.milvus.alias, target, encoder.encoder_id)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            service, self._service = self._service, None
        if service is not None:
            service.close()


@dataclass
class Limiters:
    """Bounds on concurrent blocking work (created inside the event loop, in the lifespan)."""

    inference: anyio.CapacityLimiter  # decode + detect + embed + search of an upload
    thumbnails: anyio.CapacityLimiter
    scans: anyio.CapacityLimiter  # duplicates: a full pass over the collection


def services_of(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def limiters_of(request: Request) -> Limiters:
    return request.app.state.limiters  # type: ignore[no-any-return]


async def in_thread(func: Callable[[], T], limiter: anyio.CapacityLimiter | None = None) -> T:
    return await anyio.to_thread.run_sync(func, limiter=limiter)


# -- health ----------------------------------------------------------------------------------------
def health_doc(services: Services) -> dict[str, Any]:
    """Never raises: an unreachable store is reported as ``degraded``."""
    settings = services.settings
    doc: dict[str, Any] = {
        "status": "degraded", "store_reachable": False, "milvus_uri": redact_uri(settings.milvus.uri),
        "collection": None, "faces": None, "encoder": None,
    }
    try:
        store = services.get().store
        collection = store.alias_target(settings.milvus.alias)
        doc.update(store_reachable=True, collection=collection)
        if collection:
            doc.update(faces=store.count(collection), encoder=store.encoder_of(collection))
        doc["status"] = "ok"
    except Exception as exc:  # health must answer whatever is wrong
        log.warning("health check: %s", exc)
    return doc
