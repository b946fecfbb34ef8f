"""Builders for good and bad image files used across tests (all generated, nothing downloaded)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def jpeg_bytes(img: Image.Image, quality: int = 90, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, **kwargs)
    return buf.getvalue()


def png_bomb_bytes(width: int = 30000, height: int = 30000) -> bytes:
    """A real PNG whose header claims width x height pixels but whose data is tiny."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    row = b"\x00" + b"\x00" * width
    idat = zlib.compress(row * 16, 9)  # only 16 rows present: never decoded anyway
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def truncated_jpeg(src: Path) -> bytes:
    data = src.read_bytes()
    return data[: len(data) // 2]


def exif_rotated_jpeg(src: Path) -> bytes:
    """Pixels stored rotated 90 degrees, with EXIF orientation 6 telling viewers to rotate them back."""
    img = Image.open(src).convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg_bytes(img, exif=exif.tobytes())


def sixteen_bit_png(src: Path) -> bytes:
    gray = np.asarray(Image.open(src).convert("L"), dtype=np.uint16) * 257
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, "PNG")  # mode I;16
    return buf.getvalue()


def save_as(img: Image.Image, path: Path, fmt: str, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **kwargs)
    return path


def resized_recompressed(src: Path, dst: Path, scale: float = 0.6, quality: int = 70) -> Path:
    img = Image.open(src).convert("RGB")
    small = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    return save_as(small, dst, "JPEG", quality=quality)


def cropped(src: Path, dst: Path, fraction: float = 0.03) -> Path:
    img = Image.open(src).convert("RGB")
    dx, dy = round(img.width * fraction), round(img.height * fraction)
    return save_as(img.crop((dx, dy, img.width - dx, img.height - dy)), dst, "JPEG", quality=92)
