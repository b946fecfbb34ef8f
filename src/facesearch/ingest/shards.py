"""Embedding work cut into shards by content, and the embedding of one shard (here, or on a Dask worker).

A shard is a run of images to embed, sorted by sha256 and named by a hash of its members, so the same
images always make the same shard and its cache part. :func:`embed_shard` is the unit of distributed work:
it loads the encoder once per process, skips a shard whose part is already written, and writes the part
atomically, so a retried or re-run shard never duplicates rows.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from facesearch.errors import ImageError
from facesearch.ingest.embedcache import EmbeddingCache, face_rows
from facesearch.ingest.images import LoadedImage, load_image
from facesearch.models.encoders import BACKEND_ENCODER_IDS, ENCODER_DIMS, FaceEncoder, build_encoder, encoder_backend
from facesearch.settings import Settings

log = logging.getLogger(__name__)

_ENCODERS: dict[tuple[str, int, str, int], FaceEncoder] = {}  # per process: (fingerprint, backend, threads) -> loaded encoder


@dataclass(frozen=True)
class Shard:
    key: str  # hash of the members' sha256s: the name of the shard's cache part
    paths: tuple[str, ...]  # relative to paths.images_dir
    sha256s: tuple[str, ...]


@dataclass(frozen=True)
class ShardResult:
    key: str
    images: int  # embedded (0 when skipped)
    faces: int
    failed: int  # unreadable now (changed since the manifest was built)
    skipped: bool  # already in the cache
    worker: str  # host:pid that did the work
    started_at: float = 0.0  # wall clock (time.time()) on the worker, for throughput once the workers run
    finished_at: float = 0.0
    cpu_s: float = 0.0  # the worker process's CPU time (every thread) while it embedded the shard


def encoder_id_for(settings: Settings) -> str:
    """The embedding space the settings select, without loading any model."""
    return BACKEND_ENCODER_IDS[encoder_backend(settings)]


def plan_shards(todo: pd.DataFrame, shard_images: int) -> list[Shard]:
    """Cut the manifest rows to embed (``path``, ``sha256``) into shards of ``shard_images``, by content."""
    rows = todo.drop_duplicates("sha256").sort_values("sha256")
    shards = []
    for start in range(0, len(rows), shard_images):
        chunk = rows.iloc[start : start + shard_images]
        shas = tuple(chunk["sha256"])
        key = hashlib.sha256("\n".join(shas).encode()).hexdigest()[:20]
        shards.append(Shard(key=key, paths=tuple(str(p) for p in chunk["path"]), sha256s=shas))
    return shards


def process_encoder(settings: Settings, threads: int = 0) -> FaceEncoder:
    """One loaded encoder per process and settings (a Dask worker loads its models once, not per shard)."""
    backend = encoder_backend(settings)
    key = (settings.fingerprint(), settings.encoder.batch_size, backend, threads)  # batch_size is not in the fingerprint
    if key not in _ENCODERS:
        if threads:
            settings = settings.model_copy(
                update={
                    "encoder": settings.encoder.model_copy(update={"num_threads": threads}),
                    "inference": settings.inference.model_copy(update={"threads": threads, "streams": 1}),
                }
            )
            _limit_threads(threads)
        encoder = build_encoder(settings, backend)
        encoder.load()
        _ENCODERS[key] = encoder
    return _ENCODERS[key]


def _limit_threads(threads: int) -> None:
    """OpenCV's pool is process-wide: a worker with one inference thread must not fan out to every core."""
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:  # no OpenCV model in use
        pass


def embed_shard(shard: Shard, settings: Settings, threads: int = 0) -> ShardResult:
    """Embed one shard into the cache (skipped when its part exists). Safe to run twice, anywhere."""
    worker = f"{socket.gethostname()}:{os.getpid()}"
    encoder_id = encoder_id_for(settings)
    cache = EmbeddingCache(settings.paths.embeddings_dir, encoder_id, ENCODER_DIMS[encoder_id])
    if cache.has_part(shard.key):
        return ShardResult(shard.key, 0, 0, 0, True, worker)
    encoder = process_encoder(settings, threads)
    started, cpu = time.time(), time.process_time()
    loaded = _load_images(shard, settings, threads or settings.images.load_workers)
    good = [img for img in loaded if isinstance(img, LoadedImage)]
    image_rows, faces_out = [], []
    for image, faces in zip(good, encoder.encode_loaded(good), strict=True):
        image_rows.append({"image_sha256": image.sha256, "n_faces": len(faces), "width": image.size[0], "height": image.size[1]})
        faces_out += face_rows(image.sha256, faces)
    cache.append(image_rows, faces_out, tag=shard.key)
    return ShardResult(shard.key, len(image_rows), len(faces_out), len(loaded) - len(good), False, worker, started, time.time(), time.process_time() - cpu)


def _load_images(shard: Shard, settings: Settings, threads: int) -> list[LoadedImage | ImageError]:
    """Decode the shard's photos on ``threads`` threads: a worker limited to N threads decodes on N too."""
    root = Path(settings.paths.images_dir)

    def load(path: str) -> LoadedImage | ImageError:
        try:
            return load_image(root / path, settings.images)
        except ImageError as exc:  # changed since the manifest was built: left for the next run
            log.warning("cannot embed %s: %s", path, exc)
            return exc

    with ThreadPoolExecutor(threads, thread_name_prefix="decode") as pool:
        return list(pool.map(load, shard.paths))


def steady_images_per_s(results: list[ShardResult]) -> float | None:
    """Images per second from the first shard's start to the last one's end (worker start-up and model loads excluded)."""
    done = [r for r in results if not r.skipped and r.finished_at]
    if not done:
        return None
    span = max(r.finished_at for r in done) - min(r.started_at for r in done)
    return sum(r.images for r in done) / span if span > 0 else None
