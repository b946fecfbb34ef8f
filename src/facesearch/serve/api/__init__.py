"""The HTTP API (FastAPI) and the offline search page."""

from facesearch.serve.api.app import create_app

__all__ = ["create_app"]
