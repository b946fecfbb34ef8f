"""Who is this? Nearest enrolled face (identity != '') within the encoder's calibrated threshold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from facesearch.errors import ConfigError
from facesearch.models.encoders import Face
from facesearch.serve.search import bbox_json, search_faces
from facesearch.settings import Settings
from facesearch.store import FaceStore, quote


@dataclass(frozen=True)
class Identification:
    face: Face
    identity: str | None  # None = unknown (no enrolled face within the threshold)
    distance: float | None  # distance to the nearest enrolled face, if any
    nearest_identity: str | None


def identity_threshold(settings: Settings, encoder_id: str) -> float:
    try:
        return settings.identify.thresholds[encoder_id]
    except KeyError:
        raise ConfigError(f"identify.thresholds has no entry for encoder {encoder_id!r}; run `facesearch calibrate`") from None


def identify_faces(
    store: FaceStore,
    collection: str,
    faces: list[Face],
    threshold: float,
    nprobe: int | None,
    exclude_sha256: str | None = None,
    search_params: dict[str, int] | None = None,
) -> list[Identification]:
    """Label each face with the identity of its nearest enrolled neighbour, if close enough."""
    expr = 'identity != ""'
    if exclude_sha256:
        expr += f" and image_sha256 != {quote(exclude_sha256)}"
    out = []
    for result in search_faces(store, collection, faces, k=1, nprobe=nprobe, filter=expr, search_params=search_params):
        best = result.hits[0] if result.hits else None
        known = best is not None and best.distance <= threshold
        out.append(
            Identification(
                face=result.face,
                identity=best.identity if known and best else None,
                distance=best.distance if best else None,
                nearest_identity=best.identity if best else None,
            )
        )
    return out


def identify_json(query: str, results: list[Identification], threshold: float) -> dict[str, Any]:
    return {
        "query": query,
        "threshold": threshold,
        "faces": [
            {
                "bbox": bbox_json(r.face.bbox),
                "identity": r.identity,
                "distance": None if r.distance is None else round(r.distance, 6),
            }
            for r in results
        ],
    }
