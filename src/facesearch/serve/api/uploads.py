"""Uploaded photos: labels for logs and errors, decoding under the API's image limits; duplicates parameters."""

from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from fastapi import UploadFile

from facesearch.errors import (
    ImageError,
)
from facesearch.serve.api.errors import ApiError
from facesearch.settings import ImageSettings, Settings

if TYPE_CHECKING:
    from facesearch.ingest.images import LoadedImage
    from facesearch.store.face_store import FaceStore


UPLOAD_CHUNK = 64 * 1024


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


def decode_upload(data: bytes, settings: Settings, label: str) -> "LoadedImage":
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
