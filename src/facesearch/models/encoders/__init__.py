"""Encoder factory: ``encoder.backend`` (auto | facenet | dlib) -> a loaded :class:`FaceEncoder`."""

from __future__ import annotations

import logging

from facesearch.errors import ConfigError, WeightsMissingError
from facesearch.models.encoders.base import Face, FaceEncoder, l2_normalise
from facesearch.settings import Settings

log = logging.getLogger(__name__)

BACKEND_ENCODER_IDS = {"facenet": "facenet-vggface2", "dlib": "dlib-resnet-v1"}
ENCODER_DIMS = {"facenet-vggface2": 512, "dlib-resnet-v1": 128}

__all__ = ["BACKEND_ENCODER_IDS", "ENCODER_DIMS", "Face", "FaceEncoder", "build_encoder", "backend_for", "l2_normalise"]


def backend_for(encoder_id: str) -> str:
    """``dlib-resnet-v1`` -> ``dlib``; ConfigError for an id no backend produces."""
    for backend, known in BACKEND_ENCODER_IDS.items():
        if known == encoder_id:
            return backend
    raise ConfigError(f"unknown encoder id {encoder_id!r}; known: {', '.join(BACKEND_ENCODER_IDS.values())}")


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
            raise ConfigError(
                f"encoder.device: {requested!r} but torch sees {torch.cuda.device_count()} CUDA device(s); "
                "use encoder.device=cpu or auto"
            )
    return requested


def build_encoder(settings: Settings, backend: str | None = None) -> FaceEncoder:
    """Load the encoder named by ``backend`` (default ``settings.encoder.backend``)."""
    import torch

    from facesearch.models.detectors.mtcnn import FaceDetector

    if settings.encoder.num_threads:
        torch.set_num_threads(settings.encoder.num_threads)
    backend = backend or settings.encoder.backend
    encoder_settings = settings.encoder.model_copy(update={"device": resolve_device(settings.encoder.device)})
    detector = FaceDetector(settings.detection, encoder_settings.device)
    if backend in ("facenet", "auto"):
        from facesearch.models.encoders.facenet import FacenetEncoder

        try:
            encoder: FaceEncoder = FacenetEncoder(detector, encoder_settings)
            log.info("encoder: %s (weights %s)", encoder.encoder_id, encoder.weights)  # type: ignore[attr-defined]
            return encoder
        except WeightsMissingError as exc:
            if backend == "facenet":
                raise
            log.warning("encoder: falling back to dlib-resnet-v1 because %s", exc)
    elif backend != "dlib":
        raise ConfigError(f"encoder.backend: unknown backend {backend!r} (auto, facenet, dlib)")
    from facesearch.models.encoders.dlib_resnet import DlibResNetEncoder

    encoder = DlibResNetEncoder(detector, settings.encoder.batch_size)
    log.info("encoder: %s (%s)", encoder.encoder_id, encoder.describe)
    return encoder
