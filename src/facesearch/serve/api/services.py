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
    StoreBusyError,
    StoreUnavailableError,
)
from facesearch.serve.api.auth import redact_uri
from facesearch.settings import Settings

if TYPE_CHECKING:
    from facesearch.serve.query import QueryService

log = logging.getLogger(__name__)


T = TypeVar("T")


# -- state -----------------------------------------------------------------------------------------
class Services:
    """The QueryService, opened once; reopened on demand when Milvus was down at start-up."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._service: "QueryService | None" = None

    def get(self) -> "QueryService":
        """The open :class:`QueryService` (StoreUnavailableError/StoreBusyError if Milvus cannot be reached)."""
        from facesearch.serve.query import QueryService

        with self._lock:
            if self._service is None:
                self._service = QueryService(self.settings)
            return self._service

    def warm_up(self) -> None:
        """Connect and load the models when something is indexed; tolerate an empty or unreachable store."""
        try:
            service = self.get()
            target = service.store.alias_target(self.settings.milvus.alias)
        except (StoreUnavailableError, StoreBusyError) as exc:
            log.error("Milvus not available at start-up (%s); /health reports degraded until it is", exc)
            return
        if target is None:
            log.warning("nothing indexed yet behind alias %s: /search answers 404 until photos are indexed", self.settings.milvus.alias)
            return
        service.encoder.load()  # models load lazily: pay for the weights now, not on the first request
        log.info("serving %s -> %s with encoder %s", self.settings.milvus.alias, target, service.encoder.encoder_id)

    def close(self) -> None:
        with self._lock:
            if self._service is not None:
                self._service.close()
                self._service = None


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
