"""Index photos: find files, decode (in threads), detect + embed new images, upsert into Milvus.

Idempotent by construction: a face's primary key is derived from (image sha256, face index,
encoder id), and images already in the collection are never re-embedded.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from facesearch.errors import ImageError
from facesearch.ingest.images import LoadedImage, SkippedFile, decode_image, file_sha256, iter_image_files, read_image_bytes
from facesearch.models.detectors.base import Detection
from facesearch.models.encoders import FaceEncoder
from facesearch.settings import Settings
from facesearch.store import FaceRecord, FaceStore
from facesearch.store.records import MAX_PATHS_PER_IMAGE

log = logging.getLogger(__name__)

CHUNK_IMAGES = 4  # images per embedding batch and write
LOOKAHEAD_CHUNKS = 2  # chunks read, looked up and queued for decoding ahead of the one being embedded

ProgressFn = Callable[[int], None]


def face_id(image_sha256: str, face_index: int, encoder_id: str) -> int:
    """Deterministic positive int64 primary key for one face."""
    digest = hashlib.sha256(f"{image_sha256}:{face_index}:{encoder_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


@dataclass
class IndexReport:
    collection: str
    encoder: str
    images_seen: int = 0
    images_indexed: int = 0
    images_unchanged: int = 0
    faces_indexed: int = 0
    images_skipped: list[dict[str, str]] = field(default_factory=list)

    def skip(self, path: Path, reason: str, detail: str) -> None:
        log.warning("skipped %s: %s (%s)", path, reason, detail)
        self.images_skipped.append({"path": str(path), "reason": reason, "detail": detail})

    def as_dict(self) -> dict[str, Any]:
        return {
            "images_seen": self.images_seen,
            "images_indexed": self.images_indexed,
            "images_unchanged": self.images_unchanged,
            "faces_indexed": self.faces_indexed,
            "images_skipped": self.images_skipped,
            "collection": self.collection,
            "encoder": self.encoder,
        }


@dataclass(frozen=True)
class IndexJob:
    """One file to index and the identity to attach to its faces ('' = unknown)."""

    path: Path
    identity: str = ""


def plan_jobs(paths: Sequence[Path], settings: Settings, identity_from_folder: bool = False, identity: str = "") -> tuple[list[IndexJob], list[SkippedFile]]:
    """Expand paths into jobs; with ``identity_from_folder`` a file's parent folder names the person."""
    jobs: list[IndexJob] = []
    skipped: list[SkippedFile] = []
    for item in iter_image_files(paths, settings.images):
        if isinstance(item, SkippedFile):
            skipped.append(item)
            continue
        who = item.parent.name if identity_from_folder else identity
        jobs.append(IndexJob(path=item, identity=who))
    return jobs, skipped


def canonical_path(path: Path) -> str:
    """Absolute path without resolving symlinks: what users see and pass to ``delete --image``."""
    return os.path.abspath(path)


def load_job(job: IndexJob, settings: Settings) -> LoadedImage | ImageError:
    """Read and decode one file; an unusable one gives its ImageError (the reason reported in ``images_skipped``)."""
    data = read_job(job, settings)
    return data if isinstance(data, ImageError) else decode_job(job, data, settings)


def read_job(job: IndexJob, settings: Settings) -> bytes | ImageError:
    """The file's bytes, or the ImageError that says why it cannot be read."""
    try:
        return read_image_bytes(job.path, settings.images)
    except ImageError as exc:
        return exc


def decode_job(job: IndexJob, data: bytes, settings: Settings, sha256: str | None = None) -> LoadedImage | ImageError:
    """Decode a file's bytes, or give the ImageError that says why they cannot be used."""
    try:
        return decode_image(data, settings.images, job.path, sha256)
    except ImageError as exc:
        return exc
    except MemoryError:
        return ImageError("out_of_memory", "image too large to decode in available memory")


def _chunks(items: Sequence[IndexJob], size: int) -> Iterator[Sequence[IndexJob]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _merge_existing(records: list[FaceRecord], path: str, identity: str) -> list[FaceRecord] | None:
    """Existing rows updated with a new path/identity, or None when nothing changed."""
    known = {p for r in records for p in r.image_paths}
    paths = sorted(p for p in known | {path} if p == path or os.path.exists(p))
    new_identity = identity or records[0].identity
    if set(paths) == known and all(r.identity == new_identity for r in records):
        return None
    return [FaceRecord(**{**r.__dict__, "image_paths": paths, "image_path": paths[0], "identity": new_identity}) for r in records]


def _too_many_copies(sha256: str) -> str:
    """The policy for more than MAX_PATHS_PER_IMAGE copies: the extra path is refused and reported, never dropped silently."""
    return (
        f"{MAX_PATHS_PER_IMAGE} paths are already recorded for these exact bytes (sha256 {sha256[:12]}...), the most a row holds; "
        "this copy is not recorded: remove redundant copies (`facesearch duplicates` lists them) or delete stale paths"
    )


class HashedImage(Protocol):
    """What a face row needs of its photo: a decoded ``LoadedImage``, or its hashes alone."""

    @property
    def sha256(self) -> str: ...
    @property
    def phash(self) -> int: ...


def build_records(loaded: HashedImage, faces: Iterable[Any], path: str, identity: str, encoder_id: str) -> list[FaceRecord]:
    return [
        FaceRecord(
            id=face_id(loaded.sha256, i, encoder_id),
            image_path=path,
            image_paths=[path],
            image_sha256=loaded.sha256,
            image_phash=loaded.phash,
            face_index=i,
            bbox=[round(v, 2) for v in face.bbox],
            det_prob=face.det_prob,
            identity=identity,
            encoder=encoder_id,
            embedding=face.embedding,
        )
        for i, face in enumerate(faces)
    ]


def index_jobs(
    jobs: Sequence[IndexJob],
    settings: Settings,
    store: FaceStore,
    encoder: FaceEncoder,
    collection: str,
    *,
    force: bool = False,
    progress: ProgressFn | None = None,
    report: IndexReport | None = None,
) -> IndexReport:
    """Index ``jobs`` into ``collection``; bad files are reported in the result, never raised.

    Three stages overlap: a stage thread reads and hashes the chunks ahead and looks them up in Milvus
    (images already indexed are never decoded); the pool decodes and detects each new photo as soon as it
    is planned (``inference.streams`` photos at once, no barrier inside a chunk); this thread embeds each
    chunk's faces in one batch and writes the chunk.
    """
    report = report or IndexReport(collection=collection, encoder=encoder.encoder_id)
    report.images_seen += len(jobs)
    chunks = list(_chunks(jobs, CHUNK_IMAGES))
    written: dict[str, list[FaceRecord]] = {}  # this run's rows per image: copies across chunks merge, never overwrite
    workers = max(settings.images.load_workers, settings.inference.streams)
    with ThreadPoolExecutor(workers, thread_name_prefix="photo") as pool, ThreadPoolExecutor(1, thread_name_prefix="plan") as stage:

        def plan(number: int) -> _Planned:
            return _plan(chunks[number], settings, store, encoder, collection, force, pool)

        ahead = [stage.submit(plan, n) for n in range(min(LOOKAHEAD_CHUNKS, len(chunks)))]
        for number in range(len(chunks)):
            planned = ahead.pop(0).result()
            if number + LOOKAHEAD_CHUNKS < len(chunks):
                ahead.append(stage.submit(plan, number + LOOKAHEAD_CHUNKS))
            _finish(planned, store, encoder, collection, report, written)
            log.debug("chunk %d written: %d images so far, %d faces", number + 1, (number + 1) * CHUNK_IMAGES, report.faces_indexed)
            if progress:
                progress(len(planned.chunk))
    if report.faces_indexed:
        store.flush(collection)
    return report


@dataclass(frozen=True)
class PhotoHashes:
    """A photo without its pixels: all a face row needs of it."""

    sha256: str
    phash: int


@dataclass
class _Planned:
    """One chunk after reading, hashing and the Milvus lookup; its new photos decode and detect in the pool."""

    chunk: Sequence[IndexJob]
    errors: list[tuple[IndexJob, ImageError]]
    known: list[tuple[IndexJob, PhotoHashes]]  # already in the collection: metadata merge only, never decoded
    new: list[tuple[IndexJob, Future[tuple[LoadedImage, list[Detection]] | ImageError]]]  # to embed
    existing: dict[str, list[FaceRecord]]


def _decode_and_detect(job: IndexJob, data: bytes, sha256: str, settings: Settings, encoder: FaceEncoder) -> tuple[LoadedImage, list[Detection]] | ImageError:
    loaded = decode_job(job, data, settings, sha256)
    if isinstance(loaded, ImageError):
        return loaded
    loaded.phash  # noqa: B018  (computed here, in the pool, not later on the thread that embeds)
    return loaded, encoder.detector.detect(loaded.pixels)


def _plan(
    chunk: Sequence[IndexJob],
    settings: Settings,
    store: FaceStore,
    encoder: FaceEncoder,
    collection: str,
    force: bool,
    pool: ThreadPoolExecutor,
) -> _Planned:
    read = [read_job(job, settings) for job in chunk]
    errors = [(job, item) for job, item in zip(chunk, read, strict=True) if isinstance(item, ImageError)]
    good = [(job, data, file_sha256(data)) for job, data in zip(chunk, read, strict=True) if isinstance(data, bytes)]
    existing = store.records_for_images(collection, sorted({sha for _, _, sha in good}))
    known = [(job, PhotoHashes(sha, existing[sha][0].image_phash)) for job, _, sha in good if sha in existing and not force]
    new = [(job, pool.submit(_decode_and_detect, job, data, sha, settings, encoder)) for job, data, sha in good if sha not in existing or force]
    return _Planned(chunk, errors, known, new, existing)


def _finish(
    planned: _Planned,
    store: FaceStore,
    encoder: FaceEncoder,
    collection: str,
    report: IndexReport,
    written: dict[str, list[FaceRecord]],
) -> None:
    """Wait for the chunk's photos, embed their faces in one batch, then write the chunk."""
    errors = list(planned.errors)
    done: list[tuple[IndexJob, LoadedImage, list[Detection]]] = []
    for job, future in planned.new:
        result = future.result()
        if isinstance(result, ImageError):
            errors.append((job, result))
        else:
            done.append((job, *result))
    images = [img for _, img, _ in done]
    faces_per_image = encoder.encode_detections([i.pixels for i in images], [d for _, _, d in done], [i.scale for i in images])
    new = [(job, img, faces) for (job, img, _), faces in zip(done, faces_per_image, strict=True)]
    write_chunk(ChunkFaces(errors, planned.known, new, planned.existing), store, encoder.encoder_id, collection, report, written)


@dataclass
class ChunkFaces:
    """One chunk with its faces found (here, or read back from the embedding cache of a Dask run)."""

    errors: list[tuple[IndexJob, ImageError]]
    known: Sequence[tuple[IndexJob, HashedImage]]  # already in the collection: metadata merge only
    new: Sequence[tuple[IndexJob, HashedImage, Sequence[Any]]]  # embedded: each image's faces (bbox, det_prob, embedding)
    existing: dict[str, list[FaceRecord]]  # the collection's rows of the chunk's images


def write_chunk(
    chunk: ChunkFaces,
    store: FaceStore,
    encoder_id: str,
    collection: str,
    report: IndexReport,
    written: dict[str, list[FaceRecord]],
) -> None:
    """Report the chunk's bad files, merge paths/identities of known images, build the new rows, upsert.

    ``written`` holds this run's rows per image across chunks: copies of the same bytes merge into one set of rows.
    """
    for job, error in chunk.errors:
        report.skip(job.path, error.reason, error.detail)
    current = {**chunk.existing, **written}
    updates: list[FaceRecord] = []

    def merge(sha: str, path: str, identity: str) -> None:
        merged = _merge_existing(current[sha], path, identity)
        if merged is not None and len(merged[0].image_paths) > MAX_PATHS_PER_IMAGE:
            report.skip(Path(path), "too_many_copies", _too_many_copies(sha))
            return
        if merged is not None:
            current[sha] = written[sha] = merged
            updates.extend(merged)
        report.images_unchanged += 1

    for job, img in chunk.known:
        merge(img.sha256, canonical_path(job.path), job.identity)
    for job, img, faces in chunk.new:
        path = canonical_path(job.path)
        if img.sha256 in written:  # the same bytes again in this run: one set of rows, every path
            merge(img.sha256, path, job.identity)
            continue
        previous = chunk.existing.get(img.sha256, [])
        if not faces:
            if previous:  # --force on an image whose faces are no longer found: its old rows must not linger
                store.delete_ids(collection, [r.id for r in previous])
                chunk.existing.pop(img.sha256, None)
                current.pop(img.sha256, None)
                log.info("%s: no face found any more; deleted its %d stored face(s)", path, len(previous))
            report.skip(job.path, "no_face", "no face detected" + (f"; its {len(previous)} stored face(s) were deleted" if previous else ""))
            continue
        identity = job.identity or (previous[0].identity if previous else "")
        records = build_records(img, faces, path, identity, encoder_id)
        if previous:  # --force: keep every known path, drop rows for faces no longer detected
            paths = sorted({path, *(p for r in previous for p in r.image_paths if os.path.exists(p))})
            if len(paths) > MAX_PATHS_PER_IMAGE:
                report.skip(job.path, "too_many_copies", _too_many_copies(img.sha256))
                continue
            records = [FaceRecord(**{**r.__dict__, "image_paths": paths, "image_path": paths[0]}) for r in records]
            stale = [r.id for r in previous if r.face_index >= len(records)]
            if stale:
                store.delete_ids(collection, stale)
        current[img.sha256] = written[img.sha256] = records
        updates.extend(records)
        report.images_indexed += 1
        report.faces_indexed += len(records)
    if updates:
        latest = {r.id: r for r in updates}  # last write per key wins
        store.upsert(collection, list(latest.values()))
