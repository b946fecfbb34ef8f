"""Thumbnails of indexed photos and face crops, rendered with PIL, with ETags."""

import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facesearch.errors import (
    ImageError,
)
from facesearch.serve.api.errors import ApiError
from facesearch.serve.api.services import Services
from facesearch.settings import Settings

log = logging.getLogger(__name__)


THUMB_CACHE = "private, max-age=3600"


FACE_MARGIN = 0.25  # face crops keep this fraction of the box size around the face


BOX_COLOURS = ("#ff3b6b", "#19c2ff", "#e0b400", "#2fbf6c", "#b26bff", "#ff8a00")  # as on the page (app.js)


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
    loaded = load_indexed(rows, req.sha256, settings)
    image = loaded.image  # possibly a reduced decode: stored boxes are in original pixels
    boxes = {i: [v * loaded.scale for v in box] for i, box in boxes.items()}
    if req.face_index is not None:
        return encode_jpeg(face_crop(image, boxes[req.face_index], req.max_side))
    return encode_jpeg(boxed(image, boxes, req.max_side))


def load_indexed(rows: list[dict[str, Any]], sha256: str, settings: Settings) -> Any:
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


def face_crop(image: Any, bbox: list[float], max_side: int) -> Any:
    x1, y1, x2, y2 = bbox
    mx, my = (x2 - x1) * FACE_MARGIN, (y2 - y1) * FACE_MARGIN
    box = (max(0, int(x1 - mx)), max(0, int(y1 - my)), min(image.width, int(x2 + mx) + 1), min(image.height, int(y2 + my) + 1))
    if box[2] <= box[0] or box[3] <= box[1]:
        box = (0, 0, image.width, image.height)
    crop = image.crop(box)
    crop.thumbnail((max_side, max_side))
    return crop


def boxed(image: Any, boxes: dict[int, list[float]], max_side: int) -> Any:
    from PIL import ImageDraw

    scale = min(1.0, max_side / max(image.width, image.height))
    small = image.copy()
    small.thumbnail((max_side, max_side))
    draw = ImageDraw.Draw(small)
    width = max(2, round(max(small.size) / 150))
    for i, (x1, y1, x2, y2) in sorted(boxes.items()):
        draw.rectangle([x1 * scale, y1 * scale, x2 * scale, y2 * scale], outline=BOX_COLOURS[i % len(BOX_COLOURS)], width=width)
    return small


def encode_jpeg(image: Any) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=85)
    return buf.getvalue()
