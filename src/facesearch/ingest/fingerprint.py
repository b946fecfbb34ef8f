"""Perceptual hash (DCT pHash, 63 bits) of a whole photo, for near-duplicate verification.

Resizing and JPEG recompression change it by <= 2 bits on the samples, a 3% crop by <= 14;
distinct photos differ by >= 10 bits, usually ~30 (measured on samples/faces, see README).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HASH_INPUT = 32
HASH_BLOCK = 8

_n = np.arange(HASH_INPUT)
_DCT = np.cos(np.pi * (2 * _n[None, :] + 1) * _n[:, None] / (2 * HASH_INPUT))


def image_phash(image: Image.Image | np.ndarray) -> int:
    """63-bit pHash as a non-negative int (fits Milvus INT64) of a Pillow image or an RGB uint8 array."""
    grey = image.convert("L") if isinstance(image, Image.Image) else Image.fromarray(_luma(image))
    # reducing_gap: a box reduction first, then bilinear (2.5x faster on a 1920-px photo, same bits on the samples)
    small = grey.resize((HASH_INPUT, HASH_INPUT), Image.Resampling.BILINEAR, reducing_gap=3.0)
    gray = np.asarray(small, dtype=np.float64)
    coeffs = (_DCT @ gray @ _DCT.T)[:HASH_BLOCK, :HASH_BLOCK].flatten()[1:]  # drop the DC term
    bits = coeffs > np.median(coeffs)
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma of an RGB array by OpenCV: within 1 grey level of Pillow's, 3x faster than converting to Pillow
    first; same bits on all 71 sample photos."""
    import cv2

    return rgb if rgb.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def hamming(a: int, b: int) -> int:
    return (int(a) ^ int(b)).bit_count()
