"""What the models take as a picture: a Pillow image or an RGB uint8 array (height x width x 3).

Ingest decodes JPEGs straight to arrays (:mod:`facesearch.ingest.images`); Pillow images still come from
callers that have one. The detectors and encoders work on arrays: these helpers convert at most once.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
from PIL import Image

Picture: TypeAlias = Image.Image | np.ndarray


def rgb_array(picture: Picture) -> np.ndarray:
    """The picture as an RGB uint8 array (no copy when it already is one)."""
    if isinstance(picture, np.ndarray):
        return picture if picture.ndim == 3 else np.repeat(picture[:, :, None], 3, axis=2)
    return np.asarray(picture if picture.mode == "RGB" else picture.convert("RGB"))


def pil_image(picture: Picture) -> Image.Image:
    """The picture as a Pillow RGB image (for models whose preprocessing wants one)."""
    return Image.fromarray(picture).convert("RGB") if isinstance(picture, np.ndarray) else picture.convert("RGB")


def resize_to_fit(pixels: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """(pixels no larger than ``max_side``, scale applied).

    Down to half size: OpenCV bilinear, the resize YuNet's own demo uses (on the 1920-px group photos Pillow's
    box filter gave the same faces, scores within 0.002, at 6x the cost). Further down: area averaging, which
    does not alias.
    """
    import cv2

    height, width = pixels.shape[:2]
    if max(width, height) <= max_side:
        return pixels, 1.0
    scale = max_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_LINEAR if scale >= 0.5 else cv2.INTER_AREA), scale


def pad_border(pixels: np.ndarray, pad: int, value: tuple[int, int, int]) -> np.ndarray:
    """The picture with a ``pad``-pixel border of one colour on every side."""
    import cv2

    return cv2.copyMakeBorder(pixels, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=value)
