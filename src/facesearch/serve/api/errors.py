"""FaceSearch errors -> HTTP status and JSON body; the exception handlers; documented error responses."""

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from facesearch.errors import (
    BadInputError,
    CollectionNotFoundError,
    ConfigError,
    EncoderMismatchError,
    FaceSearchError,
    ImageError,
    NoFaceError,
    PersonNotFoundError,
    StoreBusyError,
    StoreUnavailableError,
    WeightsMissingError,
)
from facesearch.serve.api.schemas import ErrorBody

log = logging.getLogger(__name__)


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
    if isinstance(exc, PersonNotFoundError):
        return 404, "person_not_found"
    if isinstance(exc, BadInputError):
        return 422, "bad_input"
    if isinstance(exc, CollectionNotFoundError):
        return 404, "not_indexed"
    if isinstance(exc, (StoreUnavailableError, StoreBusyError)):
        return 503, "store_unavailable"
    if isinstance(exc, (WeightsMissingError, EncoderMismatchError)):  # the served collection's encoder cannot run here
        return 503, "encoder_unavailable"
    return 500, "internal_error"


def error_response(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


async def facesearch_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FaceSearchError)
    status, code = error_status(exc)
    if status == 503:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
    elif status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
    detail = str(exc.detail if isinstance(exc, ImageError) else exc)
    if code in ("internal_error", "config_error"):
        detail = "internal error; the server log has the details"
    return error_response(status, code, detail)


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = getattr(exc, "error", None) or {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:  # Starlette lists only the first matching route's methods (GET /people/{id} hides PATCH)
        headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
    return error_response(exc.status_code, code, str(exc.detail), headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app serves at this path."""
    methods: set[str] = set()
    for route in request.app.routes:
        regex, route_methods = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(request.url.path):
            methods |= set(route_methods)
    return sorted(methods)


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return error_response(422, "invalid_request", "; ".join(parts) or "invalid request")


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {
        400: "Malformed request body",
        401: "Missing or wrong API key (X-API-Key)",
        404: "Nothing indexed yet, or no such image/face",
        413: "Upload too large (bytes or pixels)",
        422: "Invalid parameters, not a supported image, or no face in it",
        500: "Internal error (details only in the server log)",
        503: "Milvus unreachable or busy, or the served collection's encoder cannot be loaded",
    }
    return {c: {"model": ErrorBody, "description": text[c]} for c in codes}
