"""Incremental embedding cache: parquet part files under ``paths.embeddings_dir/<encoder id>/``.

Keyed by (image sha256, encoder): an image whose bytes were embedded before is never embedded
again, wherever it moved. Each chunk of new images is written as its own part file (written to a
temporary name, then renamed), so a crash loses at most one chunk and a re-run resumes.
Images without faces are recorded too, so they are not re-detected on every run.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from facesearch.errors import ImageError
from facesearch.ingest.images import load_image
from facesearch.models.encoders import FaceEncoder
from facesearch.settings import Settings

log = logging.getLogger(__name__)

CHUNK = 16
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

    def as_dict(self) -> dict[str, int | str]:
        return asdict(self)


class EmbeddingCache:
    """Read/append the cache for one encoder."""

    def __init__(self, root: Path, encoder_id: str, dim: int) -> None:
        self.dir = Path(root) / encoder_id
        self.encoder_id = encoder_id
        self.dim = dim

    def _read(self, kind: str, schema: pa.Schema) -> pd.DataFrame:
        folder = self.dir / kind
        parts = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
        if not parts:
            return schema.empty_table().to_pandas()
        return pa.concat_tables([pq.read_table(p, schema=schema) for p in parts]).to_pandas()

    def images(self) -> pd.DataFrame:
        return self._read("images", IMAGE_SCHEMA).drop_duplicates("image_sha256", keep="last")

    def faces(self, sha256s: set[str] | None = None) -> pd.DataFrame:
        faces = self._read("faces", face_schema(self.dim)).drop_duplicates(["image_sha256", "face_index"], keep="last")
        return faces if sha256s is None else faces[faces["image_sha256"].isin(sha256s)]

    def append(self, images: list[dict], faces: list[dict]) -> None:
        """Write one chunk: faces first, then the image rows that mark it done."""
        tag = uuid.uuid4().hex[:12]
        if faces:
            self._write("faces", pa.Table.from_pylist(faces, schema=face_schema(self.dim)), tag)
        self._write("images", pa.Table.from_pylist(images, schema=IMAGE_SCHEMA), tag)

    def _write(self, kind: str, table: pa.Table, tag: str) -> None:
        folder = self.dir / kind
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".part-{tag}.parquet.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, folder / f"part-{tag}.parquet")


def embed_dataset(
    manifest: pd.DataFrame,
    settings: Settings,
    encoder: FaceEncoder,
    progress: Callable[[int], None] | None = None,
) -> EmbedReport:
    """Embed every readable image of the manifest that the cache does not hold yet."""
    cache = EmbeddingCache(Path(settings.paths.embeddings_dir), encoder.encoder_id, encoder.dim)
    readable = manifest[manifest["readable"]].drop_duplicates("sha256")
    done = set(cache.images()["image_sha256"])
    todo = readable[~readable["sha256"].isin(done)]
    root = Path(settings.paths.images_dir)
    embedded = faces_new = failed = 0
    for start in range(0, len(todo), CHUNK):
        chunk = todo.iloc[start : start + CHUNK]
        loaded, image_rows = [], []
        for row in chunk.itertuples():
            try:
                loaded.append(load_image(root / row.path, settings.images))
            except ImageError as exc:  # changed since the manifest was built: leave it for the next run
                log.warning("cannot embed %s: %s", row.path, exc)
                failed += 1
        face_rows = []
        for image, faces in zip(loaded, encoder.encode_loaded(loaded), strict=True):
            image_rows.append({"image_sha256": image.sha256, "n_faces": len(faces), "width": image.size[0], "height": image.size[1]})
            face_rows += [
                {
                    "image_sha256": image.sha256,
                    "face_index": i,
                    "bbox": [float(v) for v in f.bbox],
                    "det_prob": float(f.det_prob),
                    "landmarks": [float(v) for point in f.landmarks for v in point],
                    "embedding": np.asarray(f.embedding, dtype=np.float32),
                }
                for i, f in enumerate(faces)
            ]
        cache.append(image_rows, face_rows)
        embedded += len(image_rows)
        faces_new += len(face_rows)
        if progress:
            progress(len(chunk))
    report = EmbedReport(encoder.encoder_id, len(readable), embedded, len(readable) - len(todo), faces_new, failed)
    log.info("embeddings: %d new images (%d faces), %d reused from cache", embedded, faces_new, report.images_reused)
    return report


def embedding_quality_frames(manifest: pd.DataFrame, settings: Settings, encoder_id: str, dim: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The frames the embeddings suite validates: per face (dim, norm, NaN, det_prob) and per image (n_faces)."""
    cache = EmbeddingCache(Path(settings.paths.embeddings_dir), encoder_id, dim)
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
