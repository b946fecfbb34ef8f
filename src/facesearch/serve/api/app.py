"""HTTP API and the search page: FastAPI over :class:`~facesearch.serve.query.QueryService`.

``facesearch serve`` runs :func:`create_app` under uvicorn (one worker). The JSON documents are the
ones the CLI prints with ``--json``. Models and the Milvus client are loaded once, in the lifespan;
every request resolves the serving alias again (through ``QueryService``), so a promotion is
picked up without a restart. Blocking work (decoding, inference, Milvus) runs in worker threads;
decoding and inference of uploads are bounded by one capacity limiter (``api.inference_concurrency``
photos at a time), which bounds memory; the models are safe to call from several threads at once.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from facesearch.errors import (
    FaceSearchError,
)
from facesearch.serve.api.auth import api_key_dependency, check_bind_allowed
from facesearch.serve.api.errors import facesearch_error_handler, http_error_handler, validation_error_handler
from facesearch.serve.api.middleware import MULTIPART_SLACK, ErrorBoundary, UploadLimit
from facesearch.serve.api.people_routes import add_people_routes
from facesearch.serve.api.routes import add_docs_routes, add_open_routes, add_query_routes, add_store_routes
from facesearch.serve.api.services import Limiters, Services, in_thread
from facesearch.settings import ApiSettings, Settings

log = logging.getLogger(__name__)


# -- the app ---------------------------------------------------------------------------------------
def create_app(settings: Settings) -> FastAPI:
    """The FastAPI app: JSON endpoints, thumbnails, the search page at ``/`` and OpenAPI at ``/docs``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services(settings)
        app.state.services = services
        app.state.limiters = Limiters(anyio.CapacityLimiter(settings.api.inference_concurrency), anyio.CapacityLimiter(2), anyio.CapacityLimiter(1))
        await in_thread(services.warm_up)
        try:
            yield
        finally:
            await in_thread(services.close)

    app = FastAPI(
        title="FaceSearch",
        version="0.1.0",
        summary="Which photos contain this face? Who is this? Which photos are duplicates?",
        lifespan=lifespan,
        docs_url=None,  # served by add_docs_routes from local assets: FastAPI's default loads them from a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.add_exception_handler(FaceSearchError, facesearch_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_middleware(UploadLimit, limit=settings.api.max_upload_bytes + MULTIPART_SLACK)
    app.add_middleware(ErrorBoundary)
    # A DNS-rebinding page reaches a loopback server under its own host name: answer only ours (400 otherwise).
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=[*settings.api.allowed_hosts, settings.api.host], www_redirect=False)
    guarded = [Depends(api_key_dependency(settings.api.api_key))] if settings.api.api_key else []
    auth = (401,) if settings.api.api_key else ()
    add_open_routes(app)
    add_docs_routes(app)
    add_query_routes(app, settings.api, settings.search.k, guarded, auth)
    add_store_routes(app, guarded, auth)
    add_people_routes(app, guarded, auth)
    return app


# -- serve -----------------------------------------------------------------------------------------
def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Run the app under uvicorn (one worker, logs on stderr); refuses non-loopback binds without a key."""
    import uvicorn

    updates = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    api = ApiSettings.model_validate({**settings.api.model_dump(), **updates})
    check_bind_allowed(api.host, api.api_key)
    settings = settings.model_copy(update={"api": api})
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.INFO)
    log.info("FaceSearch on http://%s:%d/ (API key %s)", api.host, api.port, "required" if api.api_key else "off")
    uvicorn.run(create_app(settings), host=api.host, port=api.port, workers=1, log_config=None, server_header=False)
