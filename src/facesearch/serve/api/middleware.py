"""ASGI middleware: a 500 boundary for anything unexpected, and the upload size limit."""

import logging

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facesearch.serve.api.errors import ApiError, error_response

log = logging.getLogger(__name__)


MULTIPART_SLACK = 64 * 1024  # multipart boundaries, part headers and the small form fields around the file


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
            await error_response(500, "internal_error", "internal error; the server log has the details")(scope, receive, send)


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
            response = error_response(400, "bad_request", "invalid Content-Length") if bad else self._too_large()
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
        return error_response(413, "upload_too_large", self._detail())
