"""``facesearch index`` with the embedding done elsewhere (Dask workers): the driver's half.

The driver decodes each file once for its hashes (and the same skip reasons as the in-process path),
looks the images up in the collection, cuts the content the embedding cache lacks into content-hash
shards (:mod:`facesearch.ingest.shards`), hands them to ``run_shards`` (the flow's Dask task runner), then
reads the faces back from the cache and writes them with the in-process path's own chunk writer
(:func:`facesearch.ingest.indexer.write_chunk`): same primary keys, identities, path merging and skips.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from facesearch.errors import ImageError
from facesearch.ingest.embed_plan import EmbedPlan
from facesearch.ingest.embedcache import EmbeddingCache, EmbedReport
from facesearch.ingest.indexer import (
    CHUNK_IMAGES,
    ChunkFaces,
    IndexJob,
    IndexReport,
    PhotoHashes,
    ProgressFn,
    canonical_path,
    load_job,
    write_chunk,
)
from facesearch.ingest.shards import plan_shards
from facesearch.models.encoders import ENCODER_DIMS, backend_for
from facesearch.models.encoders.base import Face
from facesearch.settings import Settings
from facesearch.store import FaceRecord, FaceStore

log = logging.getLogger(__name__)

RunShards = Callable[[EmbedPlan, Settings], EmbedReport]


def worker_settings(settings: Settings, encoder_id: str) -> Settings:
    """The settings the shards run with: the encoder backend of the collection written (``auto`` resolved)."""
    encoder = settings.encoder.model_copy(update={"backend": backend_for(encoder_id)})
    return settings.model_copy(update={"encoder": encoder})


def index_sharded(
    jobs: Sequence[IndexJob],
    settings: Settings,
    store: FaceStore,
    encoder_id: str,
    collection: str,
    run_shards: RunShards,
    *,
    force: bool = False,
    progress: ProgressFn | None = None,
    report: IndexReport | None = None,
) -> tuple[IndexReport, EmbedReport | None]:
    """Index ``jobs`` into ``collection`` with the new content embedded by ``run_shards``; bad files are reported, never raised.

    ``force`` rewrites the rows of images already in the collection, from the embedding cache (keyed by
    the bytes and the encoder, so the vectors are the ones a re-embedding gives).
    """
    report = report or IndexReport(collection=collection, encoder=encoder_id)
    report.images_seen += len(jobs)
    settings = worker_settings(settings, encoder_id)
    loaded = _hash_photos(jobs, settings)
    first_path: dict[str, str] = {}
    for job, item in zip(jobs, loaded, strict=True):
        if isinstance(item, PhotoHashes):
            first_path.setdefault(item.sha256, canonical_path(job.path))
    existing = store.records_for_images(collection, sorted(first_path))
    todo = sorted(sha for sha in first_path if force or sha not in existing)
    cache = EmbeddingCache(settings.paths.embeddings_dir, encoder_id, ENCODER_DIMS[encoder_id])
    cached = set(cache.images()["image_sha256"])
    missing = pd.DataFrame({"sha256": [s for s in todo if s not in cached]})
    missing["path"] = [first_path[s] for s in missing["sha256"]]  # absolute: a shard's paths join paths.images_dir unchanged
    plan = EmbedPlan(encoder_id, len(todo), len(todo) - len(missing), plan_shards(missing, settings.compute.shard_images))
    embedded = run_shards(plan, settings) if plan.shards else None
    faces, embedded_shas = _cached_faces(cache, set(todo))
    written: dict[str, list[FaceRecord]] = {}
    for start in range(0, len(jobs), CHUNK_IMAGES):
        chunk = _chunk(jobs[start : start + CHUNK_IMAGES], loaded[start : start + CHUNK_IMAGES], existing, set(todo), faces, embedded_shas)
        write_chunk(chunk, store, encoder_id, collection, report, written)
        if progress:
            progress(len(chunk.errors) + len(chunk.known) + len(chunk.new))
    if report.faces_indexed:
        store.flush(collection)
    return report, embedded


def _hash_photos(jobs: Sequence[IndexJob], settings: Settings) -> list[PhotoHashes | ImageError]:
    """Decode every file once (threads), keeping its hashes or the reason it cannot be used."""

    def one(job: IndexJob) -> PhotoHashes | ImageError:
        item = load_job(job, settings)
        return item if isinstance(item, ImageError) else PhotoHashes(item.sha256, item.phash)

    with ThreadPoolExecutor(settings.images.load_workers, thread_name_prefix="hash") as pool:
        return list(pool.map(one, jobs))


def _cached_faces(cache: EmbeddingCache, shas: set[str]) -> tuple[dict[str, list[Face]], set[str]]:
    """The cache's faces of ``shas`` per image, in face order, and the images the cache holds (with or without faces)."""
    done = cache.images()
    embedded = set(done.loc[done["image_sha256"].isin(shas), "image_sha256"])
    faces: dict[str, list[Face]] = {}
    for row in cache.faces(shas).sort_values(["image_sha256", "face_index"]).itertuples(index=False):
        points = np.asarray(row.landmarks, dtype=np.float32).reshape(-1, 2)
        face = Face(
            tuple(float(v) for v in row.bbox),
            float(row.det_prob),
            tuple((float(x), float(y)) for x, y in points),  # type: ignore[arg-type]
            np.asarray(row.embedding, dtype=np.float32),
        )
        faces.setdefault(row.image_sha256, []).append(face)
    return faces, embedded


def _chunk(
    jobs: Sequence[IndexJob],
    loaded: Sequence[PhotoHashes | ImageError],
    existing: dict[str, list[FaceRecord]],
    todo: set[str],
    faces: dict[str, list[Face]],
    embedded: set[str],
) -> ChunkFaces:
    errors: list[tuple[IndexJob, ImageError]] = []
    known: list[tuple[IndexJob, PhotoHashes]] = []
    new: list[tuple[IndexJob, PhotoHashes, list[Face]]] = []
    for job, item in zip(jobs, loaded, strict=True):
        if isinstance(item, ImageError):
            errors.append((job, item))
        elif item.sha256 not in todo:
            known.append((job, item))
        elif item.sha256 not in embedded:  # changed or unreadable on the worker since the driver read it
            errors.append((job, ImageError("not_embedded", f"no embedding came back for {Path(job.path).name}; see the Dask worker's log")))
        else:
            new.append((job, item, faces.get(item.sha256, [])))
    shas = {item.sha256 for item in loaded if isinstance(item, PhotoHashes)}
    return ChunkFaces(errors, known, new, {sha: existing[sha] for sha in shas if sha in existing})
