"""Build a candidate collection for one dataset version from the embedding cache.

Candidates are named ``<prefix>__<encoder>__<version8>__<UTC stamp>``: the serving collection is
never modified by a re-index; promotion moves the alias to a finished candidate instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from facesearch.ingest.dataset import readable_images
from facesearch.ingest.embedcache import EmbeddingCache
from facesearch.ingest.indexer import face_id
from facesearch.pipeline.sweep import trainable_nlist
from facesearch.settings import Settings
from facesearch.store import FaceRecord, FaceStore
from facesearch.store.registry import CollectionRegistry, RegistryEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    collection: str
    faces: int
    images: int
    dataset_version: str
    encoder: str


def candidate_name(store: FaceStore, encoder_id: str, dataset_version: str) -> str:
    return store.collection_name(encoder_id, f"{dataset_version[:8]}__{time.strftime('%Y%m%d%H%M%S', time.gmtime())}")


def candidate_records(manifest: pd.DataFrame, settings: Settings, encoder_id: str, dim: int) -> list[FaceRecord]:
    """Face rows for every readable image of the manifest, from the cache (no model needed)."""
    images = readable_images(manifest, settings).set_index("sha256")
    faces = EmbeddingCache(settings.paths.embeddings_dir, encoder_id, dim).faces(set(images.index))
    root = Path(settings.paths.images_dir).resolve()
    records = []
    for face in faces.itertuples(index=False):
        image = images.loc[face.image_sha256]
        paths = [str(root / p) for p in image["paths"]]
        records.append(
            FaceRecord(
                id=face_id(face.image_sha256, int(face.face_index), encoder_id),
                image_path=paths[0],
                image_paths=paths,
                image_sha256=face.image_sha256,
                image_phash=int(image["phash"]),
                face_index=int(face.face_index),
                bbox=[round(float(v), 2) for v in face.bbox],
                det_prob=float(face.det_prob),
                identity=str(image["identity"]),
                encoder=encoder_id,
                embedding=np.asarray(face.embedding, dtype=np.float32),
            )
        )
    return records


def load_candidate(
    store: FaceStore,
    settings: Settings,
    manifest: pd.DataFrame,
    encoder_id: str,
    dim: int,
    dataset_version: str,
    progress: Callable[[int], None] | None = None,
) -> Candidate:
    """Create a fresh candidate collection and upsert the dataset's faces into it."""
    records = candidate_records(manifest, settings, encoder_id, dim)
    name = candidate_name(store, encoder_id, dataset_version)
    # the sweep rebuilds the index; until then keep nlist within what k-means can train on these rows
    nlist = min(settings.index.nlist, trainable_nlist(len(records), settings.sweep))
    store.ensure_collection(name, dim, settings.index.model_copy(update={"nlist": nlist}))
    step = settings.milvus.insert_batch
    for i in range(0, len(records), step):
        store.upsert(name, records[i : i + step])
        if progress:
            progress(len(records[i : i + step]))
    store.flush(name)
    count = store.count(name)
    if count != len(records):
        raise RuntimeError(f"candidate {name} holds {count} rows after loading {len(records)}")
    CollectionRegistry(store).put(
        RegistryEntry(collection=name, encoder=encoder_id, dataset_version=dataset_version, settings_fingerprint=settings.fingerprint())
    )
    images = len({r.image_sha256 for r in records})
    log.info("loaded %d faces from %d images into candidate %s", len(records), images, name)
    return Candidate(name, len(records), images, dataset_version, encoder_id)
