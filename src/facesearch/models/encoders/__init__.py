"""The model registry: ``encoder.backend`` / ``detection.backend`` names -> model classes, built lazily.

Each encoder is an embedding space of its own (``encoder_id`` names its collection, with its own
calibrated thresholds), and each is paired by default (``detection.backend: auto``) with the detector
whose landmarks and boxes it was validated with: SFace with YuNet, dlib and facenet with MTCNN.
Only the torch-based models (MTCNN, facenet) import torch.
"""

from __future__ import annotations

import logging

from facesearch.errors import ConfigError
from facesearch.models.detectors.base import FaceDetector
from facesearch.models.encoders.base import Face, FaceEncoder, l2_normalise
from facesearch.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_BACKEND = "sface"  # encoder.backend auto: chosen by measurement (README: Models)
BACKEND_ENCODER_IDS = {"sface": "sface-2021dec", "facenet": "facenet-vggface2", "dlib": "dlib-resnet-v1"}
ENCODER_DIMS = {"sface-2021dec": 128, "facenet-vggface2": 512, "dlib-resnet-v1": 128}
PAIRED_DETECTOR = {"sface": "yunet", "facenet": "mtcnn", "dlib": "mtcnn"}
TORCH_MODELS = {"mtcnn", "facenet"}

__all__ = [
    "BACKEND_ENCODER_IDS",
    "ENCODER_DIMS",
    "Face",
    "FaceEncoder",
    "backend_for",
    "build_detector",
    "build_encoder",
    "detector_name",
    "l2_normalise",
    "min_detection_score",
]


def backend_for(encoder_id: str) -> str:
    """``dlib-resnet-v1`` -> ``dlib``; ConfigError for an id no backend produces."""
    for backend, known in BACKEND_ENCODER_IDS.items():
        if known == encoder_id:
            return backend
    raise ConfigError(f"unknown encoder id {encoder_id!r}; known: {', '.join(BACKEND_ENCODER_IDS.values())}")


def encoder_backend(settings: Settings, backend: str | None = None) -> str:
    """The concrete encoder backend (``auto`` resolved), ConfigError for an unknown name."""
    backend = backend or settings.encoder.backend
    if backend == "auto":
        return DEFAULT_BACKEND
    if backend not in BACKEND_ENCODER_IDS:
        raise ConfigError(f"encoder.backend: unknown backend {backend!r} ({', '.join(['auto', *BACKEND_ENCODER_IDS])})")
    return backend


def detector_name(settings: Settings, backend: str | None = None) -> str:
    """``detection.backend``, or with ``auto`` the detector paired with the encoder."""
    name = settings.detection.backend
    return PAIRED_DETECTOR[encoder_backend(settings, backend)] if name == "auto" else name


def min_detection_score(settings: Settings, backend: str | None = None) -> float:
    """The score threshold the encoder's detector applies (the validation gate checks stored faces against it)."""
    return build_detector(settings, backend).min_score  # cheap: detectors load their weights on first use


def resolve_device(requested: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; a GPU asked for but absent is a ConfigError."""
    import torch

    if requested == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
        log.info("encoder.device auto: %s", device)
        return device
    if requested.startswith("cuda"):
        index = int(requested.partition(":")[2] or 0)
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise ConfigError(f"encoder.device: {requested!r} but torch sees {torch.cuda.device_count()} CUDA device(s); use encoder.device=cpu or auto")
    return requested


def build_detector(settings: Settings, backend: str | None = None, device: str = "cpu") -> FaceDetector:
    """The detector for the encoder ``backend`` (not loaded until first use)."""
    name = detector_name(settings, backend)
    if name == "mtcnn":
        from facesearch.models.detectors.mtcnn import MtcnnDetector

        return MtcnnDetector(settings.detection, device)
    if name == "yunet":
        from facesearch.models.detectors.yunet import YuNetDetector

        return YuNetDetector(settings.detection, settings.inference)
    raise ConfigError(f"detection.backend: unknown detector {name!r} (auto, mtcnn, yunet)")


def build_encoder(settings: Settings, backend: str | None = None) -> FaceEncoder:
    """The encoder named by ``backend`` (default ``settings.encoder.backend``) with its detector.

    Cheap: weights load on first use (``encoder.load()`` to load now). facenet checks that its weights
    file exists here, so a missing file is reported before any work starts.
    """
    backend = encoder_backend(settings, backend)
    device = "cpu"
    if backend in TORCH_MODELS or detector_name(settings, backend) in TORCH_MODELS:
        import torch

        if settings.encoder.num_threads:
            torch.set_num_threads(settings.encoder.num_threads)
        device = resolve_device(settings.encoder.device)
    detector = build_detector(settings, backend, device)
    encoder: FaceEncoder
    if backend == "facenet":
        from facesearch.models.encoders.facenet import FacenetEncoder

        encoder = FacenetEncoder(detector, settings.encoder.model_copy(update={"device": device}))
    elif backend == "dlib":
        from facesearch.models.encoders.dlib_resnet import DlibResNetEncoder

        encoder = DlibResNetEncoder(detector, settings.encoder.batch_size)
    else:
        from facesearch.models.encoders.sface import SFaceEncoder

        encoder = SFaceEncoder(detector, settings.inference, settings.encoder.batch_size)
    log.info("encoder: %s with detector %s (%s)", encoder.encoder_id, detector.name, encoder.describe)
    return encoder
