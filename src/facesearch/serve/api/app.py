"""HTTP API and the search page: FastAPI over :class:`~facesearch.serve.query.QueryService`.

``facesearch serve`` runs :func:`create_app` under uvicorn (one worker). The JSON documents are the
ones the CLI prints with ``--json``. Models and the Milvus client are loaded once, in the lifespan;
every request resolves the serving alias again (through ``QueryService``), so a promotion is
picked up without a restart. Blocking work (decoding, inference, Milvus) runs in worker threads;
decoding and inference of uploads are serialised by one capacity limiter, which bounds memory
(one decoded photo at a time) and keeps the CPU-bound models from fighting over cores.
"""

import hmac
import io
import ipaddress
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path, PurePath
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI, File, Form, Path as PathParam, Query, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facesearch.errors import (
    BadInputError,
    CollectionNotFoundError,
    ConfigError,
    FaceSearchError,
    ImageError,
    NoFaceError,
    StoreBusyError,
    StoreUnavailableError,
)
from facesearch.settings import ApiSettings, ImageSettings, Settings

if TYPE_CHECKING:
    from facesearch.ingest.images import LoadedImage
    from facesearch.serve.query import QueryService
    from facesearch.store import FaceStore

log = logging.getLogger(__name__)

T = TypeVar("T")

STATIC_DIR = Path(__file__).resolve().parent / "static"
API_KEY_HEADER = "X-API-Key"
SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"
UPLOAD_CHUNK = 64 * 1024
MULTIPART_SLACK = 64 * 1024  # multipart boundaries, part headers and the small form fields around the file
THUMB_DEFAULT, THUMB_MIN, THUMB_MAX = 256, 16, 1024
THUMB_CACHE = "private, max-age=3600"
DOCS_ASSETS = "/docs-assets"
# Default of optional form/query parameters. They are typed ``float``/``int``, not ``X | None``: a form or
# query string cannot carry null (absent means "use the default"), and ``X | None`` would document one.
NOT_GIVEN: Any = None
FACE_MARGIN = 0.25  # face crops keep this fraction of the box size around the face
BOX_COLOURS = ("#ff3b6b", "#19c2ff", "#e0b400", "#2fbf6c", "#b26bff", "#ff8a00")  # as on the page (app.js)
PAGE_HEADERS = MappingProxyType({
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
})


# -- response documents (the CLI's --json shapes) ------------------------------------------------
class ErrorBody(BaseModel):
    error: str
    detail: str


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    store_reachable: bool
    milvus_uri: str
    collection: str | None
    faces: int | None
    encoder: str | None


class SearchHit(BaseModel):
    image_path: str
    face_index: int
    bbox: list[float]
    distance: float
    identity: str | None
    image_sha256: str


class SearchFace(BaseModel):
    bbox: list[float]
    det_prob: float
    hits: list[SearchHit]


class SearchResult(BaseModel):
    query: str
    faces: list[SearchFace]


class IdentifyFace(BaseModel):
    bbox: list[float]
    identity: str | None
    distance: float | None


class IdentifyResult(BaseModel):
    query: str
    threshold: float
    faces: list[IdentifyFace]


class DuplicateGroupDoc(BaseModel):
    images: list[str]
    max_distance: float


class DuplicatesResult(BaseModel):
    threshold: float
    groups: list[DuplicateGroupDoc]


class IndexDoc(BaseModel):
    type: str
    nlist: int | None
    metric: str


class StatsResult(BaseModel):
    collection: str
    faces: int
    images: int
    encoder: str | None
    dim: int
    index: IndexDoc


# -- errors ----------------------------------------------------------------------------------------
class ApiError(StarletteHTTPException):
    """An HTTP error with a machine-readable code; rendered as ``{"error": code, "detail": message}``."""

    def __init__(self, status_code: int, error: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status_code, detail=detail, headers=headers)
        self.error = error


def error_status(exc: FaceSearchError) -> tuple[int, str]:
    """HTTP status and error code for a FaceSearch exception."""
    if isinstance(exc, ImageError):
        return (413 if exc.reason == "too_many_pixels" else 422), exc.reason
    if isinstance(exc, NoFaceError):
        return 422, "no_face"
    if isinstance(exc, ConfigError):  # the server's configuration, not the request, is wrong
        return 500, "config_error"
    if isinstance(exc, BadInputError):
        return 422, "bad_input"
    if isinstance(exc, CollectionNotFoundError):
        return 404, "not_indexed"
    if isinstance(exc, (StoreUnavailableError, StoreBusyError)):
        return 503, "store_unavailable"
    return 500, "internal_error"


def _error_response(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


async def _facesearch_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FaceSearchError)
    status, code = error_status(exc)
    if status == 503:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
    elif status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
    detail = str(exc.detail if isinstance(exc, ImageError) else exc)
    if code in ("internal_error", "config_error"):
        detail = "internal error; the server log has the details"
    return _error_response(status, code, detail)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = getattr(exc, "error", None) or {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return _error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return _error_response(422, "invalid_request", "; ".join(parts) or "invalid request")


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "Malformed request body",
        401: "Missing or wrong API key (X-API-Key)",
        404: "Nothing indexed yet, or no such image/face",
        413: "Upload too large (bytes or pixels)",
        422: "Invalid parameters, not a supported image, or no face in it",
        500: "Internal error (details only in the server log)",
        503: "Milvus unreachable or busy",
    }
    return {c: {"model": ErrorBody, "description": text[c]} for c in codes}


# -- ASGI middleware -------------------------------------------------------------------------------
class ErrorBoundary:
    """Anything unexpected -> 500 with a generic message; the traceback goes to the log only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            if started:
                raise
            await _error_response(500, "internal_error", "internal error; the server log has the details")(scope, receive, send)


class UploadLimit:
    """Refuse request bodies over ``limit`` bytes: early from Content-Length, else while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            bad = not declared.isdigit()
            response = _error_response(400, "bad_request", "invalid Content-Length") if bad else self._too_large()
            await response(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise ApiError(413, "upload_too_large", self._detail())
            return message

        await self.app(scope, counting_receive, send)

    def _detail(self) -> str:
        return f"request body larger than {self.limit - MULTIPART_SLACK} bytes (api.max_upload_bytes)"

    def _too_large(self) -> JSONResponse:
        return _error_response(413, "upload_too_large", self._detail())


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


def _services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def _limiters(request: Request) -> Limiters:
    return request.app.state.limiters  # type: ignore[no-any-return]


async def _in_thread(func: Callable[[], T], limiter: anyio.CapacityLimiter | None = None) -> T:
    return await anyio.to_thread.run_sync(func, limiter=limiter)


# -- security --------------------------------------------------------------------------------------
def is_loopback_host(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1 (brackets allowed)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind_allowed(host: str, api_key: str) -> None:
    """Refuse (ConfigError, exit code 2) to expose the API beyond loopback without an API key."""
    if not is_loopback_host(host) and not api_key:
        raise ConfigError(
            f"refusing to serve on {host!r} without an API key: set api.api_key "
            "(e.g. FACESEARCH__API__API_KEY=...) or bind to 127.0.0.1"
        )


def _api_key_dependency(expected: str) -> Callable[..., Awaitable[None]]:
    scheme = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="the server's api.api_key")

    async def require_api_key(key: Annotated[str | None, Security(scheme)] = None) -> None:
        if not key or not hmac.compare_digest(key.encode(), expected.encode()):
            raise ApiError(
                401,
                "unauthorized",
                f"missing or wrong API key: send it in the {API_KEY_HEADER} header",
                headers={"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'},
            )

    return require_api_key


def redact_uri(uri: str) -> str:
    """A Milvus URI without user:password."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


# -- uploads ---------------------------------------------------------------------------------------
async def read_upload(upload: UploadFile, limit: int) -> bytes:
    """The uploaded bytes, read in chunks; 413 as soon as more than ``limit`` arrive."""
    data = bytearray()
    while chunk := await upload.read(min(UPLOAD_CHUNK, limit + 1 - len(data))):
        data += chunk
        if len(data) > limit:
            raise ApiError(413, "upload_too_large", f"upload larger than {limit} bytes (api.max_upload_bytes)")
    return bytes(data)


def upload_label(upload: UploadFile) -> str:
    """The client's file name (no directories) for the ``query`` field; never used as a path."""
    name = PurePath((upload.filename or "").replace("\\", "/")).name
    return name[:200] or "upload"


def upload_image_settings(settings: Settings) -> ImageSettings:
    return settings.images.model_copy(update={"max_pixels": settings.api.max_upload_pixels})


def _decode_upload(data: bytes, settings: Settings, label: str) -> "LoadedImage":
    """Pillow sniffs the format from the bytes; the pixel count is checked from the header first."""
    from facesearch.ingest.images import decode_image

    try:
        return decode_image(data, upload_image_settings(settings), Path(label))
    except ImageError as exc:
        if exc.reason != "too_many_pixels":
            raise
        limit = settings.api.max_upload_pixels
        raise ImageError("too_many_pixels", f"more than api.max_upload_pixels={limit} pixels (possible decompression bomb)") from exc


# -- duplicates: the CLI's defaults ------------------------------------------------------------------
@dataclass(frozen=True)
class DuplicateParams:
    threshold: float
    k: int
    nprobe: int
    near_identical: float
    phash_max_bits: int
    layout_tolerance: float
    batch: int


def duplicate_params(settings: Settings, encoder_id: str, threshold: float | None = None) -> DuplicateParams:
    """The defaults ``facesearch duplicates`` uses, per encoder."""
    dup = settings.duplicates
    return DuplicateParams(
        threshold=threshold if threshold is not None else dup.thresholds.get(encoder_id, 0.5),
        k=dup.k,
        nprobe=settings.index.nprobe,
        near_identical=dup.near_identical.get(encoder_id, 0.0),
        phash_max_bits=dup.phash_max_bits,
        layout_tolerance=dup.layout_tolerance,
        batch=dup.query_batch,
    )


def duplicates_doc(store: "FaceStore", settings: Settings, threshold: float | None) -> dict[str, Any]:
    from facesearch.serve.duplicates import duplicates_json, find_duplicates

    collection = store.resolve(settings.milvus.alias)
    p = duplicate_params(settings, store.encoder_of(collection) or "", threshold)
    groups = find_duplicates(
        store, collection, p.threshold, p.k, p.nprobe,
        near_identical=p.near_identical, phash_max_bits=p.phash_max_bits, layout_tolerance=p.layout_tolerance, batch=p.batch,
    )
    return duplicates_json(groups, p.threshold)


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


# -- thumbnails ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ThumbRequest:
    sha256: str
    face_index: int | None
    max_side: int

    @property
    def etag(self) -> str:
        face = "all" if self.face_index is None else f"f{self.face_index}"
        return f'"{self.sha256}-{face}-{self.max_side}"'


def etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or etag in tags


def thumbnail_jpeg(services: Services, req: ThumbRequest) -> bytes:
    """The stored photo with its face boxes, or one face's crop; the file path comes from Milvus only."""
    from facesearch.store import quote

    settings = services.settings
    store = services.get().store
    collection = store.resolve(settings.milvus.alias)
    rows = store.query(collection, f"image_sha256 == {quote(req.sha256)}", ["image_path", "image_paths", "face_index", "bbox"])
    if not rows:
        raise ApiError(404, "not_found", f"no indexed image with sha256 {req.sha256}")
    boxes = {int(r["face_index"]): [float(v) for v in r["bbox"]] for r in rows}
    if req.face_index is not None and req.face_index not in boxes:
        raise ApiError(404, "not_found", f"image {req.sha256} has no face {req.face_index}")
    loaded = _load_indexed(rows, req.sha256, settings)
    image = loaded.image  # possibly a reduced decode: stored boxes are in original pixels
    boxes = {i: [v * loaded.scale for v in box] for i, box in boxes.items()}
    if req.face_index is not None:
        return _encode_jpeg(_face_crop(image, boxes[req.face_index], req.max_side))
    return _encode_jpeg(_boxed(image, boxes, req.max_side))


def _load_indexed(rows: list[dict[str, Any]], sha256: str, settings: Settings) -> Any:
    """The first path recorded for these bytes that still holds them."""
    from facesearch.ingest.images import load_image

    paths = dict.fromkeys([*(p for r in rows for p in (r.get("image_paths") or [])), rows[0]["image_path"]])
    for path in paths:
        try:
            loaded = load_image(Path(path), settings.images)
        except ImageError as exc:
            log.info("thumbnail %s: %s: %s", sha256[:12], path, exc.reason)
            continue
        if loaded.sha256 == sha256:
            return loaded
        log.info("thumbnail %s: %s changed since it was indexed", sha256[:12], path)
    raise ApiError(404, "file_gone", f"the photo {sha256} is indexed but its file is gone or changed since indexing")


def _face_crop(image: Any, bbox: list[float], max_side: int) -> Any:
    x1, y1, x2, y2 = bbox
    mx, my = (x2 - x1) * FACE_MARGIN, (y2 - y1) * FACE_MARGIN
    box = (max(0, int(x1 - mx)), max(0, int(y1 - my)), min(image.width, int(x2 + mx) + 1), min(image.height, int(y2 + my) + 1))
    if box[2] <= box[0] or box[3] <= box[1]:
        box = (0, 0, image.width, image.height)
    crop = image.crop(box)
    crop.thumbnail((max_side, max_side))
    return crop


def _boxed(image: Any, boxes: dict[int, list[float]], max_side: int) -> Any:
    from PIL import ImageDraw

    scale = min(1.0, max_side / max(image.width, image.height))
    small = image.copy()
    small.thumbnail((max_side, max_side))
    draw = ImageDraw.Draw(small)
    width = max(2, round(max(small.size) / 150))
    for i, (x1, y1, x2, y2) in sorted(boxes.items()):
        draw.rectangle([x1 * scale, y1 * scale, x2 * scale, y2 * scale], outline=BOX_COLOURS[i % len(BOX_COLOURS)], width=width)
    return small


def _encode_jpeg(image: Any) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=85)
    return buf.getvalue()


# -- the app ---------------------------------------------------------------------------------------
def create_app(settings: Settings) -> FastAPI:
    """The FastAPI app: JSON endpoints, thumbnails, the search page at ``/`` and OpenAPI at ``/docs``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services(settings)
        app.state.services = services
        app.state.limiters = Limiters(anyio.CapacityLimiter(1), anyio.CapacityLimiter(2), anyio.CapacityLimiter(1))
        await _in_thread(services.warm_up)
        try:
            yield
        finally:
            await _in_thread(services.close)

    app = FastAPI(
        title="FaceSearch",
        version="0.1.0",
        summary="Which photos contain this face? Who is this? Which photos are duplicates?",
        lifespan=lifespan,
        docs_url=None,  # served by _add_docs_routes from local assets: FastAPI's default loads them from a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.add_exception_handler(FaceSearchError, _facesearch_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(UploadLimit, limit=settings.api.max_upload_bytes + MULTIPART_SLACK)
    app.add_middleware(ErrorBoundary)
    guarded = [Depends(_api_key_dependency(settings.api.api_key))] if settings.api.api_key else []
    auth = (401,) if settings.api.api_key else ()
    _add_open_routes(app)
    _add_docs_routes(app)
    _add_query_routes(app, settings.api, settings.search.k, guarded, auth)
    _add_store_routes(app, guarded, auth)
    return app


def _add_open_routes(app: FastAPI) -> None:
    @app.get("/health", response_model=Health, tags=["status"])
    async def health(request: Request) -> dict[str, Any]:
        """Store reachability and what is being served. Always 200; ``status`` says ``degraded`` when Milvus is down."""
        return await _in_thread(lambda: health_doc(_services(request)))

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={**PAGE_HEADERS, "Cache-Control": "no-cache"})

    app.mount("/static", _StaticWithHeaders(directory=STATIC_DIR), name="static")


def _add_docs_routes(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` and ReDoc at ``/redoc`` from the assets in the ``fastapi-offline`` wheel.

    FastAPI's own pages load them from a CDN and stay blank offline.
    """
    assets = files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} API",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )


class _StaticWithHeaders(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update({**PAGE_HEADERS, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})
        return response


def _add_query_routes(app: FastAPI, api: ApiSettings, default_k: int, guarded: list[Any], auth: tuple[int, ...]) -> None:
    errors = _responses(400, *auth, 404, 413, 422, 500, 503)
    k_default = min(default_k, api.max_k)

    @app.post("/search", response_model=SearchResult, responses=errors, dependencies=guarded, tags=["query"])
    async def search(
        request: Request,
        image: Annotated[UploadFile, File(description="The query photo (JPEG, PNG, WebP, BMP, TIFF, GIF; sniffed from the bytes).")],
        k: Annotated[int, Form(ge=1, le=api.max_k, description="Hits per face.")] = k_default,
    ) -> dict[str, Any]:
        """Which photos contain the faces in this photo? The ``k`` nearest stored faces for each face found."""
        data, label = await read_upload(image, api.max_upload_bytes), upload_label(image)
        settings, services = request.app.state.settings, _services(request)
        return await _in_thread(lambda: services.get().search(_decode_upload(data, settings, label), k, label=label), _limiters(request).inference)

    @app.post("/identify", response_model=IdentifyResult, responses=errors, dependencies=guarded, tags=["query"])
    async def identify(
        request: Request,
        image: Annotated[UploadFile, File(description="Photo of the person(s) to identify.")],
        threshold: Annotated[float, Form(ge=0.0, le=2.0, description="Max distance to an enrolled face (default: calibrated per encoder).")] = NOT_GIVEN,
    ) -> dict[str, Any]:
        """Who is this? For each face, the identity of the nearest enrolled face within the threshold, else null."""
        data, label = await read_upload(image, api.max_upload_bytes), upload_label(image)
        settings, services = request.app.state.settings, _services(request)
        return await _in_thread(
            lambda: services.get().identify(_decode_upload(data, settings, label), threshold, label=label), _limiters(request).inference
        )


def _add_store_routes(app: FastAPI, guarded: list[Any], auth: tuple[int, ...]) -> None:
    @app.get("/duplicates", response_model=DuplicatesResult, responses=_responses(*auth, 404, 422, 500, 503), dependencies=guarded, tags=["store"])
    async def duplicates(
        request: Request,
        threshold: Annotated[float, Query(ge=0.0, le=2.0, description="Max face distance between copies (default per encoder).")] = NOT_GIVEN,
    ) -> dict[str, Any]:
        """Groups of photos that are copies of each other (resized, recompressed, lightly cropped)."""
        services = _services(request)
        return await _in_thread(lambda: duplicates_doc(services.get().store, services.settings, threshold), _limiters(request).scans)

    @app.get("/stats", response_model=StatsResult, responses=_responses(*auth, 404, 500, 503), dependencies=guarded, tags=["store"])
    async def stats(request: Request) -> dict[str, Any]:
        """Counts, encoder and the index in force behind the serving alias (as ``facesearch stats``)."""
        from facesearch.serve.admin import collection_stats

        services = _services(request)

        def doc() -> dict[str, Any]:
            store = services.get().store
            return collection_stats(store, store.resolve(services.settings.milvus.alias))

        return await _in_thread(doc)

    thumb_responses: dict[int | str, dict[str, Any]] = {
        200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}, "description": "JPEG thumbnail"},
        304: {"description": "Not modified (If-None-Match matched the ETag)"},
        **_responses(*auth, 404, 422, 500, 503),
    }

    @app.get("/faces/{image_sha256}/thumbnail", response_class=Response, responses=thumb_responses, dependencies=guarded, tags=["store"])
    async def thumbnail(
        request: Request,
        image_sha256: Annotated[str, PathParam(pattern=SHA256_PATTERN, description="sha256 of the stored photo's bytes (64 hex digits).")],
        face_index: Annotated[int, Query(ge=0, le=10_000, description="Crop this face instead of boxing all of them.")] = NOT_GIVEN,
        max_side: Annotated[int, Query(ge=THUMB_MIN, le=THUMB_MAX, description="Longest side of the JPEG in pixels.")] = THUMB_DEFAULT,
    ) -> Response:
        """A JPEG of a stored photo with its faces boxed, or the crop of one face (``face_index``)."""
        req = ThumbRequest(image_sha256.lower(), face_index, max_side)
        headers = {"ETag": req.etag, "Cache-Control": THUMB_CACHE}
        if etag_matches(request.headers.get("if-none-match"), req.etag):
            return Response(status_code=304, headers=headers)
        jpeg = await _in_thread(lambda: thumbnail_jpeg(_services(request), req), _limiters(request).thumbnails)
        return Response(jpeg, media_type="image/jpeg", headers=headers)


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
