"""MTCNN (facenet-pytorch, MIT; weights ship in the wheel): the seed's detector, and facenet's crop convention.

facenet-pytorch returns ``None`` for no face and ``dtype=object`` arrays under numpy 2; this wrapper
always returns arrays, and :class:`~facesearch.models.detectors.base.FaceDetector` the fixed ``list[Detection]``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from PIL import Image

from facesearch.models.detectors.base import FaceDetector, RawDetections
from facesearch.settings import DetectionSettings


class MtcnnDetector(FaceDetector):
    """MTCNN's P/R/O-net cascade over an image pyramid (torch)."""

    name: ClassVar[str] = "mtcnn"

    def __init__(self, settings: DetectionSettings, device: str = "cpu") -> None:
        super().__init__(settings)
        self.device = device
        self._mtcnn: Any = None

    @property
    def min_score(self) -> float:
        return self.settings.min_det_prob

    def _load(self) -> None:
        from facenet_pytorch import MTCNN  # heavy import (torch), deferred until a detector is needed

        self._mtcnn = MTCNN(
            keep_all=True,
            min_face_size=self.settings.min_face_size,
            factor=self.settings.pyramid_factor,
            thresholds=list(self.settings.thresholds),
            device=self.device,
            post_process=False,
        )

    def _raw_detect(self, pixels: np.ndarray) -> RawDetections:
        image = Image.fromarray(pixels)  # facenet-pytorch's preprocessing takes Pillow images
        if min(image.size) < self.settings.min_face_size:  # no pyramid level fits: facenet-pytorch would fail in torch.cat
            return RawDetections.empty()
        boxes, probs, points = self._mtcnn.detect(image, landmarks=True)
        if boxes is None or len(boxes) == 0:
            return RawDetections.empty()
        return RawDetections(np.asarray(boxes, dtype=np.float64), np.asarray(probs, dtype=np.float64), np.asarray(points, dtype=np.float64))
