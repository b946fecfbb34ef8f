"""Finding image files and decoding them safely into RGB.

Every failure becomes an :class:`~facesearch.errors.ImageError` with a short ``reason`` code
(``empty_file``, ``truncated``, ``too_many_pixels`` ...), so an index run can report the file and move on.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facesearch.errors import ImageError
from facesearch.ingest.fingerprint import image_phash
from facesearch.settings import ImageSettings

log = logging.getLogger(__name__)

# Formats Pillow can decode that we accept as photos. MPO = multi-picture JPEG from cameras.
ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF"})
# Extensions of photo formats we cannot decode: reported as skipped rather than silently ignored.
KNOWN_UNSUPPORTED_EXTENSIONS = frozenset(
    {".heic", ".heif", ".avif", ".jxl", ".raw", ".cr2", ".cr3", ".nef", ".arw", ".dng", ".orf", ".rw2", ".psd", ".svg"}
)


@dataclass(frozen=True)
class LoadedImage:
    """A decoded photo: RGB, EXIF orientation applied, plus its content hash.

    ``image`` may be smaller than the photo: big JPEGs are decoded at a reduced DCT scale
    (``images.draft_side``). ``original_size`` is the photo's size (upright) and ``scale`` maps
    ``image`` pixels to it; face boxes are always reported in original pixels.
    """

    path: Path
    sha256: str
    image: Image.Image
    source_format: str
    source_mode: str
    phash: int
    original_size: tuple[int, int]

    @property
    def size(self) -> tuple[int, int]:
        """The photo's upright size in pixels (not the decoded working copy's)."""
        return self.original_size

    @property
    def scale(self) -> float:
        return self.image.width / self.original_size[0]


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str
    detail: str


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def iter_image_files(paths: Iterable[Path], settings: ImageSettings) -> Iterator[Path | SkippedFile]:
    """Yield image files under ``paths`` in a stable order, and :class:`SkippedFile` for ones we refuse.

    Directories are walked without following directory symlinks (no loops). A file named
    explicitly is always tried; inside directories only known image extensions are considered.
    """
    accepted = {ext.lower() for ext in settings.extensions}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from _walk_directory(path, accepted)
        elif path.is_symlink() and not path.exists():
            yield _broken_link(path)
        elif path.exists():
            yield path
        else:
            yield SkippedFile(path, "not_found", "no such file or directory")


def _walk_directory(root: Path, accepted: set[str]) -> Iterator[Path | SkippedFile]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=lambda e: log.warning("cannot list %s: %s", e.filename, e.strerror)):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            suffix = path.suffix.lower()
            if suffix in accepted:
                yield _broken_link(path) if path.is_symlink() and not path.exists() else path
            elif suffix in KNOWN_UNSUPPORTED_EXTENSIONS:
                yield SkippedFile(path, "unsupported_format", f"{suffix} files are not supported; convert to JPEG or PNG")


def _broken_link(path: Path) -> SkippedFile:
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return SkippedFile(path, "symlink_loop", "symbolic link points back at itself")
    return SkippedFile(path, "dangling_symlink", f"symbolic link target {os.readlink(path)!r} does not exist")


def read_image_bytes(path: Path, settings: ImageSettings) -> bytes:
    """Read a file for decoding, refusing empty, oversize and non-regular files first."""
    try:
        stat = path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageError("symlink_loop", "symbolic link points back at itself") from exc
        if path.is_symlink():
            raise ImageError("dangling_symlink", "symbolic link target does not exist") from exc
        raise ImageError("unreadable", exc.strerror or str(exc)) from exc
    if path.is_dir():
        raise ImageError("not_a_file", "is a directory")
    if stat.st_size == 0:
        raise ImageError("empty_file", "file is 0 bytes")
    if stat.st_size > settings.max_file_bytes:
        raise ImageError("file_too_large", f"{stat.st_size} bytes > images.max_file_bytes={settings.max_file_bytes}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError("unreadable", exc.strerror or str(exc)) from exc


def decode_image(data: bytes, settings: ImageSettings, path: Path = Path("<bytes>")) -> LoadedImage:
    """Decode bytes into an RGB :class:`LoadedImage`, checking the pixel count before decoding."""
    if not data:
        raise ImageError("empty_file", "file is 0 bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise ImageError("too_many_pixels", str(exc)) from exc
        except UnidentifiedImageError as exc:
            raise ImageError("not_an_image", "not a recognised image format") from exc
        except OSError as exc:
            raise ImageError("corrupt", str(exc)) from exc
        if img.format not in ACCEPTED_FORMATS:
            raise ImageError("unsupported_format", f"{img.format} images are not supported")
        width, height = img.size
        if width < 1 or height < 1:
            raise ImageError("corrupt", f"invalid dimensions {width}x{height}")
        if width * height > settings.max_pixels:
            raise ImageError(
                "too_many_pixels",
                f"{width}x{height} = {width * height} pixels > images.max_pixels={settings.max_pixels} (possible decompression bomb)",
            )
        source_format, source_mode = img.format, img.mode
        if getattr(img, "n_frames", 1) > 1:
            img.seek(0)  # animated/multi-page: the first frame is the photo
        if settings.draft_side and source_format in ("JPEG", "MPO") and max(width, height) > settings.draft_side:
            # libjpeg decodes at 1/2, 1/4 or 1/8 scale directly; Pillow keeps the result >= the size asked for
            factor = settings.draft_side / max(width, height)
            img.draft(img.mode, (max(1, int(width * factor)), max(1, int(height * factor))))
        try:
            img.load()
        except OSError as exc:
            reason = "truncated" if "truncated" in str(exc).lower() else "corrupt"
            raise ImageError(reason, str(exc)) from exc
        except (ValueError, SyntaxError, EOFError) as exc:  # Pillow raises these on some malformed files
            raise ImageError("corrupt", str(exc) or type(exc).__name__) from exc
        decoded_size = img.size
        rgb = to_rgb(_apply_exif_orientation(img))
    original = (width, height) if rgb.size == decoded_size else (height, width)  # EXIF may swap the axes
    return LoadedImage(
        path=path,
        sha256=file_sha256(data),
        image=rgb,
        source_format=source_format,
        source_mode=source_mode,
        phash=image_phash(rgb),
        original_size=original,
    )


def load_image(path: Path, settings: ImageSettings) -> LoadedImage:
    """Read and decode one image file; raises :class:`ImageError` with a reason code."""
    return decode_image(read_image_bytes(path, settings), settings, path)


def _apply_exif_orientation(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception as exc:  # broken EXIF blocks are common; the pixels are still fine
        log.warning("ignoring unreadable EXIF orientation: %s", exc)
        return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode (L, P, RGBA, LA, CMYK, I;16, F, ...) to 8-bit RGB."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
        scaled = np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled).convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")
