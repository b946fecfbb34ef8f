"""Who may call: loopback binding without a key, the X-API-Key check, URIs redacted for display."""

import hmac
import ipaddress
from collections.abc import Awaitable, Callable
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from fastapi import Security
from fastapi.security import APIKeyHeader

from facesearch.errors import (
    ConfigError,
)
from facesearch.serve.api.errors import ApiError

API_KEY_HEADER = "X-API-Key"


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


def api_key_dependency(expected: str) -> Callable[..., Awaitable[None]]:
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
