"""Incremental embedding cache: parquet parts under ``paths.embeddings_dir/<encoder id>/{faces,images}/``.

Keyed by (image sha256, encoder): an image whose bytes were embedded before is never embedded again,
wherever it moved. Work is cut into shards (:mod:`facesearch.ingest.shards`); each shard is written as
its own part, named by a hash of its content, to a temporary name first and then renamed, faces before
the image rows that mark the shard done. So a crash or a killed worker loses at most the shards in
flight, a shard already written is skipped, and a shard written twice holds the same rows (readers keep
one row per key). The root goes through fsspec: a local folder, or ``s3://...``/any shared filesystem
that every Dask worker can reach.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

IMAGE_SCHEMA = pa.schema([("image_sha256", pa.string()), ("n_faces", pa.int32()), ("width", pa.int32()), ("height", pa.int32())])


def face_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("image_sha256", pa.string()),
            ("face_index", pa.int32()),
            ("bbox", pa.list_(pa.float32(), 4)),
            ("det_prob", pa.float32()),
            ("landmarks", pa.list_(pa.float32(), 10)),
            ("embedding", pa.list_(pa.float32(), dim)),
        ]
    )


@dataclass(frozen=True)
class EmbedReport:
    encoder: str
    images_total: int  # unique readable images in the dataset
    images_embedded: int  # embedded in this run
    images_reused: int  # found in the cache
    faces_new: int
    images_failed: int  # readable in the manifest, unreadable now (changed under us)
    shards: int = 0  # shards embedded in this run
    workers: str = "in-process"  # or the Dask scheduler address
    steady_images_per_s: float | None = None  # once every worker had its models loaded
    cpu_s_per_image: float | None = None  # CPU seconds (all threads) the workers spent per embedded image

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class EmbeddingCache:
    """Read and append the cache of one encoder, on any fsspec filesystem."""

    def __init__(self, root: str, encoder_id: str, dim: int) -> None:
        import fsspec

        self.fs, base = fsspec.core.url_to_fs(str(root))
        self.dir = f"{base.rstrip('/')}/{encoder_id}"
        self.encoder_id = encoder_id
        self.dim = dim

    def _parts(self, kind: str) -> list[str]:
        return sorted(self.fs.glob(f"{self.dir}/{kind}/part-*.parquet"))

    def _read(self, kind: str, schema: pa.Schema) -> pd.DataFrame:
        parts = self._parts(kind)
        if not parts:
            return schema.empty_table().to_pandas()
        tables = []
        for part in parts:
            with self.fs.open(part, "rb") as f:
                tables.append(pq.read_table(f, schema=schema))
        return pa.concat_tables(tables).to_pandas()

    def images(self) -> pd.DataFrame:
        return self._read("images", IMAGE_SCHEMA).drop_duplicates("image_sha256", keep="last")

    def faces(self, sha256s: set[str] | None = None) -> pd.DataFrame:
        faces = self._read("faces", face_schema(self.dim)).drop_duplicates(["image_sha256", "face_index"], keep="last")
        return faces if sha256s is None else faces[faces["image_sha256"].isin(sha256s)]

    def has_part(self, tag: str) -> bool:
        """Is the shard ``tag`` written (its image rows are the last thing written)?"""
        return bool(self.fs.exists(f"{self.dir}/images/part-{tag}.parquet"))

    def append(self, images: list[dict[str, Any]], faces: list[dict[str, Any]], tag: str) -> None:
        """Write one shard (``tag`` = its key): faces first, then the image rows that mark it done."""
        if faces:
            self._write("faces", pa.Table.from_pylist(faces, schema=face_schema(self.dim)), tag)
        self._write("images", pa.Table.from_pylist(images, schema=IMAGE_SCHEMA), tag)

    def _write(self, kind: str, table: pa.Table, tag: str) -> None:
        folder = f"{self.dir}/{kind}"
        self.fs.makedirs(folder, exist_ok=True)
        tmp = f"{folder}/.part-{tag}-{uuid.uuid4().hex[:8]}.parquet.tmp"
        with self.fs.open(tmp, "wb") as f:
            pq.write_table(table, f)
        self.fs.mv(tmp, f"{folder}/part-{tag}.parquet")  # a rename on local and POSIX filesystems


def face_rows(image_sha256: str, faces: list[Any]) -> list[dict[str, Any]]:
    """Cache rows of one image's faces."""
    return [
        {
            "image_sha256": image_sha256,
            "face_index": i,
            "bbox": [float(v) for v in f.bbox],
            "det_prob": float(f.det_prob),
            "landmarks": [float(v) for point in f.landmarks for v in point],
            "embedding": np.asarray(f.embedding, dtype=np.float32),
        }
        for i, f in enumerate(faces)
    ]


def embedding_quality_frames(manifest: pd.DataFrame, root: str, encoder_id: str, dim: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The frames the embeddings suite validates: per face (dim, norm, NaN, det_prob) and per image (n_faces)."""
    cache = EmbeddingCache(root, encoder_id, dim)
    shas = set(manifest.loc[manifest["readable"], "sha256"])
    faces = cache.faces(shas)
    vectors = np.stack(faces["embedding"].to_numpy()) if len(faces) else np.zeros((0, dim), dtype=np.float32)
    face_frame = pd.DataFrame(
        {
            "image_sha256": faces["image_sha256"].to_numpy(),
            "face_index": faces["face_index"].to_numpy(),
            "dim": [len(v) for v in faces["embedding"]],
            "norm": np.linalg.norm(vectors, axis=1) if len(vectors) else np.zeros(0),
            "has_nan": np.isnan(vectors).any(axis=1) if len(vectors) else np.zeros(0, dtype=bool),
            "det_prob": faces["det_prob"].to_numpy(),
        }
    )
    images = cache.images()
    images = images[images["image_sha256"].isin(shas)][["image_sha256", "n_faces"]].reset_index(drop=True)
    return face_frame, images
