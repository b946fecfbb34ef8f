"""Errors FaceSearch raises on purpose, each with the exit code the CLI maps it to.

Exit codes: 2 = the user's input is wrong (bad image, no face, bad config);
1 = anything else (store down, missing weights, internal failure).
"""

from __future__ import annotations


class FaceSearchError(Exception):
    """Base class: the message is one line a person can act on."""

    exit_code = 1


class BadInputError(FaceSearchError):
    """The caller gave us something we cannot use (exit code 2)."""

    exit_code = 2


class ConfigError(BadInputError):
    """Configuration failed validation; the message names the offending key."""


class ImageError(BadInputError):
    """An image could not be used. ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class NoFaceError(BadInputError):
    """A query image contains no detectable face."""


class PersonNotFoundError(BadInputError):
    """No person with the id or name asked for (``facesearch people``, ``/people``)."""


class WeightsMissingError(FaceSearchError):
    """Model weights are not on disk and could not be fetched."""


class StoreError(FaceSearchError):
    """Milvus refused or failed an operation."""


class StoreUnavailableError(StoreError):
    """Milvus cannot be reached at the configured URI."""


class StoreBusyError(StoreError):
    """A Milvus Lite data directory is locked by another process."""


class CollectionNotFoundError(StoreError):
    """The collection or alias asked for does not exist."""


class EncoderMismatchError(StoreError):
    """The collection was built with another encoder than the one in use."""


class IndexParamsNotHonouredError(StoreError):
    """Milvus reports index parameters other than those requested."""


class ComputeUnavailableError(FaceSearchError):
    """The configured Dask scheduler (``compute.dask_address``) cannot be reached."""
