"""The encoder interface: images in, faces (box, probability, landmarks, unit embedding) out.

An encoder owns the detector it was built with, aligns each face the way its network was trained, and
embeds crops in batches. Weights load lazily (:class:`~facesearch.models.base.InferenceModel`).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from facesearch.models.base import InferenceModel
from facesearch.models.detectors.base import BBox, Detection, FaceDetector
from facesearch.models.pictures import Picture

log = logging.getLogger(__name__)


class ScaledImage(Protocol):
    """A decoded photo (``ingest.images.LoadedImage``): RGB pixels, and their size relative to the original."""

    @property
    def pixels(self) -> np.ndarray: ...
    @property
    def scale(self) -> float: ...


@dataclass(frozen=True)
class Face:
    bbox: BBox
    det_prob: float
    landmarks: tuple[tuple[float, float], ...]
    embedding: np.ndarray  # float32, shape (dim,), L2 norm 1


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class FaceEncoder(InferenceModel):
    """Detect, crop/align per backend, embed crops in batches.

    Subclasses set ``name`` (the ``encoder.backend``), ``encoder_id`` (the embedding space: it names the
    collection) and ``dim``, and write ``_load``, ``_crops`` (one image's aligned face crops) and
    ``_embed_batch`` (crops -> raw vectors).
    """

    encoder_id: ClassVar[str]
    dim: ClassVar[int]
    describe: ClassVar[str]

    def __init__(self, detector: FaceDetector, batch_size: int = 32) -> None:
        super().__init__()
        self.detector = detector
        self.batch_size = batch_size

    def _predict(self, images: Sequence[Picture], scales: Sequence[float] | None = None) -> list[list[Face]]:
        return self.encode(images, scales)

    def encode(self, images: Sequence[Picture], scales: Sequence[float] | None = None) -> list[list[Face]]:
        """Faces of each image, in the detector's left-to-right order.

        ``scales[i]`` is image i's size relative to the original photo (a reduced decode):
        boxes and landmarks are divided by it, so they are in original pixels.
        """
        detections = [self.detector.detect(image) for image in images]
        return self.encode_detections(images, detections, scales)

    def encode_loaded(self, images: Sequence[ScaledImage]) -> list[list[Face]]:
        """:meth:`encode` for decoded photos, boxes in the photos' own pixels."""
        return self.encode([i.pixels for i in images], [i.scale for i in images])

    def encode_detections(self, images: Sequence[Picture], detections: Sequence[list[Detection]], scales: Sequence[float] | None = None) -> list[list[Face]]:
        self.load()
        crops: list[Any] = []
        for image, dets in zip(images, detections, strict=True):
            if dets:
                crops.extend(self._crops(image, dets))
        vectors = self.embed_crops(crops)
        faces: list[list[Face]] = []
        cursor = 0
        for k, dets in enumerate(detections):
            s = scales[k] if scales else 1.0
            faces.append(
                [
                    Face(
                        tuple(v / s for v in d.bbox),  # type: ignore[arg-type]
                        d.det_prob,
                        tuple((x / s, y / s) for x, y in d.landmarks),
                        vectors[cursor + i],
                    )
                    for i, d in enumerate(dets)
                ]
            )
            cursor += len(dets)
        return faces

    def embed_crops(self, crops: Sequence[Any]) -> np.ndarray:
        if not crops:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        chunks = [self._embed_batch(crops[i : i + self.batch_size]) for i in range(0, len(crops), self.batch_size)]
        return l2_normalise(np.concatenate(chunks, axis=0))

    @abstractmethod
    def _crops(self, image: Picture, detections: list[Detection]) -> list[Any]:
        """Aligned crops for the detected faces of one image, in order."""

    @abstractmethod
    def _embed_batch(self, crops: Sequence[Any]) -> np.ndarray:
        """Raw (n, dim) vectors for a batch of crops."""
