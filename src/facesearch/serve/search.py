"""Query side: image -> faces -> embeddings -> nearest faces in Milvus (shared by CLI, flows and API)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from facesearch.errors import NoFaceError
from facesearch.ingest.images import LoadedImage
from facesearch.models.encoders import Face, FaceEncoder
from facesearch.store import FaceStore, Hit


@dataclass(frozen=True)
class FaceHits:
    face: Face
    hits: list[Hit]


def query_faces(encoder: FaceEncoder, image: LoadedImage) -> list[Face]:
    """All faces of a query image; NoFaceError (exit code 2) when there are none."""
    faces = encoder.encode_loaded([image])[0]
    if not faces:
        raise NoFaceError(f"no face found in query image {image.path}")
    return faces


def search_faces(
    store: FaceStore, collection: str, faces: list[Face], k: int, nprobe: int | None, filter: str = "", search_params: dict[str, int] | None = None,
) -> list[FaceHits]:
    """Top-k stored faces for each query face, in one batched Milvus call (``search_params`` as promotion chose them)."""
    import numpy as np

    vectors = np.stack([f.embedding for f in faces])
    results = store.search(collection, vectors, k=k, nprobe=nprobe, filter=filter, search_params=search_params)
    return [FaceHits(face, hits) for face, hits in zip(faces, results, strict=True)]


def bbox_json(bbox: Any) -> list[float]:
    return [round(float(v), 1) for v in bbox]


def hit_json(hit: Hit, threshold: float | None = None) -> dict[str, Any]:
    """One hit; ``same_person`` says whether it is within the encoder's calibrated threshold (None: none calibrated)."""
    return {
        "image_path": hit.image_path,
        "face_index": hit.face_index,
        "bbox": bbox_json(hit.bbox),
        "distance": round(hit.distance, 6),
        "identity": hit.identity or None,
        "image_sha256": hit.image_sha256,
        "same_person": None if threshold is None else hit.distance <= threshold,
    }


def search_json(query: str, results: list[FaceHits], threshold: float | None = None) -> dict[str, Any]:
    return {
        "query": query,
        "threshold": threshold,
        "faces": [{"bbox": bbox_json(r.face.bbox), "det_prob": round(r.face.det_prob, 4), "hits": [hit_json(h, threshold) for h in r.hits]} for r in results],
    }
