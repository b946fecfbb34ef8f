"""What every face detector shares: the Detection type, detection on a downscaled copy, the close-up retry.

Subclasses write ``_raw_detect`` (boxes, scores and five landmarks on the image they are given) and say
their score threshold; :class:`FaceDetector` maps results back to the original pixels, filters, caps and
orders them left to right, so a face's index is stable for the same image and settings.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from dataclasses import dataclass

import numpy as np

from facesearch.models.base import InferenceModel
from facesearch.models.pictures import Picture, pad_border, resize_to_fit, rgb_array
from facesearch.settings import DetectionSettings

log = logging.getLogger(__name__)

BBox = tuple[float, float, float, float]
PAD_FRACTION = 0.25  # of the longest side, on every side, for the retry on a photo with no face found
PAD_GREY = (128, 128, 128)
CLOSE_UP_MIN_SIDE = 0.3  # the retry keeps only faces at least this fraction of the photo's shorter side


@dataclass(frozen=True)
class Detection:
    bbox: BBox  # x1, y1, x2, y2 in the original image
    det_prob: float
    landmarks: tuple[tuple[float, float], ...]  # left eye, right eye, nose, mouth left, mouth right (as seen in the image)


@dataclass(frozen=True)
class RawDetections:
    """A detector's output on the image it saw: boxes (n, 4) x1y1x2y2, scores (n,), landmarks (n, 5, 2)."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @staticmethod
    def empty() -> RawDetections:
        return RawDetections(np.zeros((0, 4)), np.zeros((0,)), np.zeros((0, 5, 2)))


class FaceDetector(InferenceModel):
    """An image in, ``list[Detection]`` in original pixels out, left to right."""

    def __init__(self, settings: DetectionSettings) -> None:
        super().__init__()
        self.settings = settings

    @property
    @abstractmethod
    def min_score(self) -> float:
        """Detections scoring below this are dropped."""

    @abstractmethod
    def _raw_detect(self, pixels: np.ndarray) -> RawDetections:
        """Faces on the RGB array as given (already downscaled), in its pixels."""

    @property
    def retry_max_side(self) -> int:
        """Longest side of the bordered copy the close-up retry runs on."""
        return self.settings.max_side

    def _predict(self, image: Picture) -> list[Detection]:
        return self.detect(image)

    def detect(self, image: Picture) -> list[Detection]:
        """Faces in ``image`` (original pixels), left to right.

        A face that fills the frame (a close-up cropped to the face) is missed by detectors whose smallest
        anchor or pyramid level is smaller than it. A photo with no face found is tried once more with a grey
        border around it, keeping only faces big enough to be such a close-up (a small "face" found so is a
        false positive).
        """
        self.load()
        pixels = rgb_array(image)
        size = (pixels.shape[1], pixels.shape[0])
        detections = self._detect(pixels, self.settings.max_side)
        if detections or not self.settings.retry_padded:
            return detections
        pad = max(1, round(max(size) * PAD_FRACTION))
        padded = self._detect(pad_border(pixels, pad, PAD_GREY), self.retry_max_side)
        min_side = CLOSE_UP_MIN_SIDE * min(size)
        close_ups = [d for d in padded if min(d.bbox[2] - d.bbox[0], d.bbox[3] - d.bbox[1]) >= min_side]
        if close_ups:
            log.debug("found %d close-up face(s) only with a %d px border", len(close_ups), pad)
        return [_shift(d, -pad, size) for d in close_ups]

    def _detect(self, pixels: np.ndarray, max_side: int) -> list[Detection]:
        small, scale = resize_to_fit(pixels, max_side)
        raw = self._raw_detect(small)
        if len(raw.scores) == 0:
            return []
        boxes = np.asarray(raw.boxes, dtype=np.float64).reshape(-1, 4) / scale
        probs = np.asarray(raw.scores, dtype=np.float64).reshape(-1)
        points = np.asarray(raw.landmarks, dtype=np.float64).reshape(-1, 5, 2) / scale
        keep = np.flatnonzero(probs >= self.min_score)
        if len(keep) > self.settings.max_faces_per_image:
            log.warning("keeping the %d most confident of %d faces", self.settings.max_faces_per_image, len(keep))
            keep = keep[np.argsort(-probs[keep], kind="stable")[: self.settings.max_faces_per_image]]
        height, width = pixels.shape[:2]
        detections = [
            Detection(
                bbox=_clip_box(boxes[i], width, height),
                det_prob=float(probs[i]),
                landmarks=tuple((float(x), float(y)) for x, y in points[i]),
            )
            for i in keep
        ]
        return sorted(detections, key=lambda d: (round(d.bbox[0]), round(d.bbox[1])))


def _shift(detection: Detection, offset: float, size: tuple[int, int]) -> Detection:
    """Move a detection found on a padded copy back into the original image (box clipped to it)."""
    x1, y1, x2, y2 = (v + offset for v in detection.bbox)
    return Detection(
        bbox=_clip_box(np.array([x1, y1, x2, y2]), *size),
        det_prob=detection.det_prob,
        landmarks=tuple((x + offset, y + offset) for x, y in detection.landmarks),
    )


def _clip_box(box: np.ndarray, width: int, height: int) -> BBox:
    x1, y1, x2, y2 = (float(v) for v in box)
    return (max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
