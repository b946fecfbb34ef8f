"""The API's routes: open (page, health), docs, queries (search, identify), store (duplicates, stats, thumbnails)."""

from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from facesearch.serve.api.errors import error_responses
from facesearch.serve.api.schemas import DuplicatesResult, Health, IdentifyResult, SearchResult, StatsResult
from facesearch.serve.api.services import health_doc, in_thread, limiters_of, services_of
from facesearch.serve.api.thumbnails import THUMB_CACHE, ThumbRequest, etag_matches, thumbnail_jpeg
from facesearch.serve.api.uploads import decode_upload, duplicates_doc, read_upload, upload_label
from facesearch.settings import ApiSettings

STATIC_DIR = Path(__file__).resolve().parent / "static"


SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"


THUMB_DEFAULT, THUMB_MIN, THUMB_MAX = 256, 16, 1024


DOCS_ASSETS = "/docs-assets"


# Default of optional form/query parameters. They are typed ``float``/``int``, not ``X | None``: a form or
# query string cannot carry null (absent means "use the default"), and ``X | None`` would document one.
NOT_GIVEN: Any = None


PAGE_HEADERS = MappingProxyType({
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
})


def add_open_routes(app: FastAPI) -> None:
    @app.get("/health", response_model=Health, tags=["status"], responses={503: {"model": Health, "description": "Milvus unreachable"}})
    async def health(request: Request, response: Response) -> dict[str, Any]:
        """Store reachability and what is being served: 200 ``ok``, or 503 ``degraded`` (at once) while Milvus is down."""
        doc = await in_thread(lambda: health_doc(services_of(request)))
        if doc["status"] != "ok":
            response.status_code = 503
        return doc

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={**PAGE_HEADERS, "Cache-Control": "no-cache"})

    app.mount("/static", StaticWithHeaders(directory=STATIC_DIR), name="static")


def add_docs_routes(app: FastAPI) -> None:
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


class StaticWithHeaders(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update({**PAGE_HEADERS, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})
        return response


def add_query_routes(app: FastAPI, api: ApiSettings, default_k: int, guarded: list[Any], auth: tuple[int, ...]) -> None:
    errors = error_responses(400, *auth, 404, 413, 422, 500, 503)
    k_default = min(default_k, api.max_k)

    @app.post("/search", response_model=SearchResult, responses=errors, dependencies=guarded, tags=["query"])
    async def search(
        request: Request,
        image: Annotated[UploadFile, File(description="The query photo (JPEG, PNG, WebP, BMP, TIFF, GIF; sniffed from the bytes).")],
        k: Annotated[int, Form(ge=1, le=api.max_k, description="Hits per face.")] = k_default,
    ) -> dict[str, Any]:
        """Which photos contain the faces in this photo? The ``k`` nearest stored faces for each face found."""
        data, label = await read_upload(image, api.max_upload_bytes), upload_label(image)
        settings, services = request.app.state.settings, services_of(request)
        return await in_thread(lambda: services.get().search(decode_upload(data, settings, label), k, label=label), limiters_of(request).inference)

    @app.post("/identify", response_model=IdentifyResult, responses=errors, dependencies=guarded, tags=["query"])
    async def identify(
        request: Request,
        image: Annotated[UploadFile, File(description="Photo of the person(s) to identify.")],
        threshold: Annotated[float, Form(ge=0.0, le=2.0, description="Max distance to an enrolled face (default: calibrated per encoder).")] = NOT_GIVEN,
    ) -> dict[str, Any]:
        """Who is this? For each face, the identity of the nearest enrolled face within the threshold, else null."""
        data, label = await read_upload(image, api.max_upload_bytes), upload_label(image)
        settings, services = request.app.state.settings, services_of(request)
        return await in_thread(
            lambda: services.get().identify(decode_upload(data, settings, label), threshold, label=label), limiters_of(request).inference
        )


def add_store_routes(app: FastAPI, guarded: list[Any], auth: tuple[int, ...]) -> None:
    @app.get("/duplicates", response_model=DuplicatesResult, responses=error_responses(*auth, 404, 422, 500, 503), dependencies=guarded, tags=["store"])
    async def duplicates(
        request: Request,
        threshold: Annotated[float, Query(ge=0.0, le=2.0, description="Max face distance between copies (default per encoder).")] = NOT_GIVEN,
    ) -> dict[str, Any]:
        """Groups of photos that are copies of each other (resized, recompressed, lightly cropped)."""
        services = services_of(request)
        return await in_thread(lambda: duplicates_doc(services.get().store, services.settings, threshold), limiters_of(request).scans)

    @app.get("/stats", response_model=StatsResult, responses=error_responses(*auth, 404, 500, 503), dependencies=guarded, tags=["store"])
    async def stats(request: Request) -> dict[str, Any]:
        """Counts, encoder and the index in force behind the serving alias (as ``facesearch stats``)."""
        from facesearch.serve.admin import collection_stats

        services = services_of(request)

        def doc() -> dict[str, Any]:
            store = services.get().store
            return collection_stats(store, store.resolve(services.settings.milvus.alias))

        return await in_thread(doc)

    thumb_responses: dict[int | str, dict[str, Any]] = {
        200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}, "description": "JPEG thumbnail"},
        304: {"description": "Not modified (If-None-Match matched the ETag)"},
        **error_responses(*auth, 404, 422, 500, 503),
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
        jpeg = await in_thread(lambda: thumbnail_jpeg(services_of(request), req), limiters_of(request).thumbnails)
        return Response(jpeg, media_type="image/jpeg", headers=headers)
