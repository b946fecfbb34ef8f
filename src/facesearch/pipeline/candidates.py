"""Build a candidate collection for one dataset version from the embedding cache.

Candidates are named ``<prefix>__<encoder>__<version8>__<run8>`` (run8: a hash of the flow run that
builds it), so a retried load finds its own half-loaded collection instead of making another. A
candidate is registered (status ``loading``) before its first row is written and becomes
``candidate`` once every row is in: retention never drops what another run is still building. The
serving collection is never modified by a re-index; promotion moves the alias to a finished candidate.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from facesearch.errors import FaceSearchError
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


def candidate_name(store: FaceStore, encoder_id: str, dataset_version: str, run_key: str) -> str:
    """Same run, dataset and encoder -> same name: a retry resumes the collection it started."""
    run8 = hashlib.sha256(run_key.encode()).hexdigest()[:8]
    return store.collection_name(encoder_id, f"{dataset_version[:8]}__{run8}")


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
    run_key: str,
    progress: Callable[[int], None] | None = None,
) -> Candidate:
    """Create (or resume) this run's candidate collection and upsert the dataset's faces into it.

    Upserts are keyed by face id, so loading twice leaves the same rows as loading once.
    """
    records = candidate_records(manifest, settings, encoder_id, dim)
    name = candidate_name(store, encoder_id, dataset_version, run_key)
    registry = CollectionRegistry(store)
    entry = registry.get(name)
    if entry is not None and entry.status not in ("loading", "candidate"):
        raise FaceSearchError(f"candidate {name} of run {run_key} is already {entry.status}; it is not loaded again")
    entry = registry.put(
        (entry or RegistryEntry(collection=name, encoder=encoder_id)).with_(
            dataset_version=dataset_version, settings_fingerprint=settings.fingerprint(), status="loading"
        )
    )  # registered before the first row: another run's retention leaves it alone
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
    registry.put(entry.with_(status="candidate"))
    images = len({r.image_sha256 for r in records})
    log.info("loaded %d faces from %d images into candidate %s", len(records), images, name)
    return Candidate(name, len(records), images, dataset_version, encoder_id)
