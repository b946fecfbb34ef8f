"""What a face row is in Milvus (FaceRecord), what a search returns (Hit), and filter literals."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facesearch.errors import StoreError

MAX_PATH_LEN = 4096


MAX_PATHS_PER_IMAGE = 64


SCALAR_FIELDS = ["image_path", "image_paths", "image_sha256", "image_phash", "face_index", "bbox", "det_prob", "identity", "encoder"]


# What a search hit shows, in the collections made before HIT_JSON existed (their searches fetch these fields).
HIT_FIELDS = ["image_path", "image_paths", "image_sha256", "image_phash", "face_index", "bbox", "identity"]

# A hit's fields packed in one VARCHAR, written beside the scalar fields (which filters and queries keep using).
# Why: Milvus 2.3.5 pays per output field and more per ARRAY field: at 100k faces on the local standalone,
# fetching this one field instead of seven took 0.4-0.6 ms off each search, fetching it with the image_paths
# array only 0.2 ms (2026-12-02, README: Performance). So the paths are packed too, unless they make the
# JSON longer than a VARCHAR holds (64 paths of 4096 bytes could): then they are left out and the search
# reads those rows' image_paths with one query.
HIT_JSON = "hit_json"
HIT_JSON_MAX_LEN = 65535  # Milvus' VARCHAR limit, in bytes
PACKED_HIT_FIELDS = [HIT_JSON]
_PACKED_KEYS = ("image_path", "image_sha256", "image_phash", "face_index", "bbox", "identity", "image_paths")


@dataclass(frozen=True)
class FaceRecord:
    """One face row. ``image_paths`` lists every path where these exact bytes were seen."""

    id: int
    image_path: str
    image_paths: list[str]
    image_sha256: str
    image_phash: int
    face_index: int
    bbox: list[float]
    det_prob: float
    identity: str
    encoder: str
    embedding: np.ndarray

    def to_row(self) -> dict[str, Any]:
        """The row as Milvus takes it, ``hit_json`` included (writers drop it for older collections)."""
        if len(self.image_paths) > MAX_PATHS_PER_IMAGE:  # the schema's array capacity: refuse, never truncate silently
            raise StoreError(
                f"face {self.id} of {self.image_sha256[:12]}... has {len(self.image_paths)} image paths; a row holds at most "
                f"{MAX_PATHS_PER_IMAGE} (ingest refuses the extra copies and reports them as too_many_copies)"
            )
        return {
            "id": self.id,
            "image_path": self.image_path,
            "image_paths": list(self.image_paths),
            "image_sha256": self.image_sha256,
            "image_phash": int(self.image_phash),
            "face_index": self.face_index,
            "bbox": [float(v) for v in self.bbox],
            "det_prob": float(self.det_prob),
            "identity": self.identity,
            "encoder": self.encoder,
            "embedding": np.asarray(self.embedding, dtype=np.float32).tolist(),
            HIT_JSON: pack_hit(self.image_path, self.image_sha256, self.image_phash, self.face_index, self.bbox, self.identity, self.image_paths),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> FaceRecord:
        return cls(
            id=int(row["id"]),
            image_path=row["image_path"],
            image_paths=list(row["image_paths"]),
            image_sha256=row["image_sha256"],
            image_phash=int(row["image_phash"]),
            face_index=int(row["face_index"]),
            bbox=[float(v) for v in row["bbox"]],
            det_prob=float(row["det_prob"]),
            identity=row["identity"],
            encoder=row["encoder"],
            embedding=np.asarray(row["embedding"], dtype=np.float32),
        )


@dataclass(frozen=True)
class Hit:
    id: int
    distance: float
    image_path: str
    image_sha256: str
    face_index: int
    bbox: list[float]
    identity: str
    image_phash: int = 0
    image_paths: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class IndexInfo:
    index_type: str
    metric_type: str
    nlist: int | None
    params: dict[str, Any] = field(default_factory=dict)  # every build parameter describe_index reports

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.index_type, "nlist": self.nlist, "metric": self.metric_type}


def quote(value: str) -> str:
    """A string literal for a Milvus boolean expression."""
    return json.dumps(value, ensure_ascii=False)


def hit_from_values(
    id_: Any,
    squared_distance: float,
    image_path: str,
    image_sha256: str,
    face_index: Any,
    bbox: Any,
    identity: str,
    image_phash: Any,
    image_paths: Any,
) -> Hit:
    """A Hit from Milvus' values: true L2 from its squared distance, bbox to 0.1 px, and the defaults
    (phash 0, no other paths) for collections made before those fields existed (None here)."""
    return Hit(
        id=int(id_),
        distance=float(np.sqrt(max(float(squared_distance), 0.0))),
        image_path=image_path,
        image_sha256=image_sha256,
        face_index=int(face_index),
        bbox=[round(float(v), 1) for v in bbox],
        identity=identity,
        image_phash=int(image_phash or 0),
        image_paths=list(image_paths or []),
    )


def pack_hit(image_path: str, image_sha256: str, image_phash: int, face_index: int, bbox: Any, identity: str, image_paths: list[str]) -> str:
    """The ``hit_json`` value: what a hit shows, as compact JSON; without the paths when they do not fit."""
    values = (image_path, image_sha256, int(image_phash), int(face_index), [float(v) for v in bbox], identity, list(image_paths))
    packed = dict(zip(_PACKED_KEYS, values, strict=True))
    text = json.dumps(packed, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode()) > HIT_JSON_MAX_LEN:
        del packed["image_paths"]  # read from the image_paths field instead (ReadsMixin.search)
        text = json.dumps(packed, ensure_ascii=False, separators=(",", ":"))
    return text


def hit_from_packed(id_: Any, squared_distance: float, packed: str) -> Hit:
    """A Hit from ``hit_json``; its ``image_paths`` are empty when they were too long to pack."""
    v = json.loads(packed)
    return hit_from_values(
        id_, squared_distance, v["image_path"], v["image_sha256"], v["face_index"], v["bbox"], v["identity"], v["image_phash"], v.get("image_paths")
    )


def hit_from_row(raw: dict[str, Any]) -> Hit:
    """A Hit from one row of ``MilvusClient.search`` (PACKED_HIT_FIELDS or HIT_FIELDS)."""
    entity = raw.get("entity", raw)
    if HIT_JSON in entity:
        return hit_from_packed(raw["id"], raw["distance"], entity[HIT_JSON])
    if "image_path" not in entity:  # asked a collection without hit_json for it: Milvus Lite leaves it out silently
        raise StoreError(f"a search hit has neither {HIT_JSON} nor image_path: the collection is not the one asked about")
    return hit_from_values(
        raw["id"],
        raw["distance"],
        entity["image_path"],
        entity["image_sha256"],
        entity["face_index"],
        entity["bbox"],
        entity["identity"],
        entity.get("image_phash"),
        entity.get("image_paths"),
    )
