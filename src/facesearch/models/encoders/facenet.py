"""facenet-pytorch InceptionResnetV1 pretrained on VGGFace2 (512-d).

The weights are not in the wheel: facenet-pytorch downloads ``20180402-114759-vggface2.pt`` into
``$TORCH_HOME/checkpoints`` on first use. We keep that path, accept a local file via
``encoder.weights_path``, and fail with a message that names the file when neither works.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from facesearch.errors import FaceSearchError, WeightsMissingError
from facesearch.models.detectors.base import Detection, FaceDetector
from facesearch.models.encoders.base import FaceEncoder
from facesearch.models.pictures import Picture, pil_image
from facesearch.settings import EncoderSettings

log = logging.getLogger(__name__)

WEIGHTS_FILE = "20180402-114759-vggface2.pt"
WEIGHTS_URL = f"https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/{WEIGHTS_FILE}"
CROP_SIZE = 160


def default_weights_path() -> Path:
    """Where facenet-pytorch itself caches the weights: ``$TORCH_HOME/checkpoints/<file>``."""
    from facenet_pytorch.models.inception_resnet_v1 import get_torch_home

    return Path(get_torch_home()) / "checkpoints" / WEIGHTS_FILE


def _missing_message(path: Path, why: str) -> str:
    return (
        f"facenet weights not found: {path} ({why}). Download {WEIGHTS_URL} (107 MB) and put it at {path}, "
        f"or point encoder.weights_path (env FACESEARCH__ENCODER__WEIGHTS_PATH) at a local copy; "
        f"encoder.backend=dlib works fully offline."
    )


def resolve_weights(settings: EncoderSettings) -> Path:
    """Return a local weights file, downloading it the way facenet-pytorch does if allowed."""
    if settings.weights_path is not None:
        path = Path(settings.weights_path).expanduser()
        if not path.is_file():
            raise WeightsMissingError(_missing_message(path, "encoder.weights_path does not exist"))
        return path
    path = default_weights_path()
    if path.is_file():
        return path
    if not settings.allow_download:
        raise WeightsMissingError(_missing_message(path, "not cached and encoder.allow_download is false"))
    from facenet_pytorch.models.utils.download import download_url_to_file

    log.info("downloading facenet weights to %s", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        download_url_to_file(WEIGHTS_URL, str(path))
    except Exception as exc:  # any network failure: no DNS, proxy, HTTP error, timeout
        path.unlink(missing_ok=True)
        raise WeightsMissingError(_missing_message(path, f"download failed: {exc}")) from exc
    return path


def load_inception_resnet(weights: Path, device: str) -> torch.nn.Module:
    """InceptionResnetV1 in eval mode with the given VGGFace2 state_dict (classifier head dropped)."""
    from facenet_pytorch import InceptionResnetV1

    model = InceptionResnetV1(pretrained=None, classify=False)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise FaceSearchError(f"cannot load facenet weights from {weights}: {exc}") from exc
    return model.eval().to(device)


def onnx_session(model: torch.nn.Module, weights: Path, threads: int) -> Any:
    """An onnxruntime session of the same network (1.8-3x faster than torch on CPU here).

    The export is cached beside facenet-pytorch's checkpoints, keyed by the weights file's
    size and mtime, so it costs ~2 s once per weights file, not per process.
    """
    import onnxruntime as ort

    stat = weights.stat()
    cache = Path(torch.hub.get_dir()).parent / "checkpoints" / "facesearch-onnx" / f"{weights.stem}-{stat.st_size}-{stat.st_mtime_ns}.onnx"
    if not cache.exists():
        export_onnx(model, cache)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(cache), options, providers=["CPUExecutionProvider"])


def export_onnx(model: torch.nn.Module, target: Path) -> None:
    """Export ``model`` to ``target`` atomically: a unique temp file beside it, then ``os.replace``.

    Processes exporting at once (first runs of several workers) each write their own file; the
    last rename wins and every reader sees a complete model.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".onnx.tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                model.cpu(),
                torch.zeros(1, 3, CROP_SIZE, CROP_SIZE),
                str(tmp),
                input_names=["faces"],
                output_names=["embeddings"],
                dynamic_axes={"faces": {0: "n"}, "embeddings": {0: "n"}},
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported InceptionResnetV1 to ONNX: %s", target)


class FacenetEncoder(FaceEncoder):
    """MTCNN crop (160x160, fixed standardisation) -> InceptionResnetV1 -> 512-d.

    ``encoder.runtime: onnx`` (default on CPU) runs the same weights in onnxruntime; ``torch``
    runs them in PyTorch (and is what a CUDA device uses).
    """

    name: ClassVar[str] = "facenet"
    encoder_id = "facenet-vggface2"
    dim = 512
    describe = "facenet-pytorch InceptionResnetV1, VGGFace2 weights (512-d)"

    def __init__(self, detector: FaceDetector, settings: EncoderSettings) -> None:
        super().__init__(detector, settings.batch_size)
        self.device = settings.device
        self.settings = settings
        self.weights = resolve_weights(settings)  # a missing file is reported now, before any work starts
        self.margin = detector.settings.crop_margin
        self._model: Any = None
        self._session: Any = None

    def _load(self) -> None:
        settings = self.settings
        self._model = load_inception_resnet(self.weights, self.device)
        if settings.runtime == "onnx" and self.device == "cpu":
            try:
                self._session = onnx_session(self._model, self.weights, settings.num_threads)
            except Exception as exc:  # onnxruntime missing or export failed: torch still works, ~2x slower
                log.warning("facenet ONNX runtime not available (%s: %s): falling back to torch (slower)", type(exc).__name__, exc)

    def _crops(self, picture: Picture, detections: list[Detection]) -> list[torch.Tensor]:
        from facenet_pytorch import fixed_image_standardization
        from facenet_pytorch.models.utils.detect_face import extract_face

        image = pil_image(picture)
        return [fixed_image_standardization(extract_face(image, list(d.bbox), image_size=CROP_SIZE, margin=self.margin)) for d in detections]

    def _embed_batch(self, crops: Sequence[torch.Tensor]) -> np.ndarray:
        if self._session is not None:
            return self._session.run(None, {"faces": torch.stack(list(crops)).numpy()})[0]
        with torch.inference_mode():
            return self._model(torch.stack(list(crops)).to(self.device)).cpu().numpy()
