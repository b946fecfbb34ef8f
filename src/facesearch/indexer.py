"""Index photos: find files, decode (in threads), detect + embed new images, upsert into Milvus.

Idempotent by construction: a face's primary key is derived from (image sha256, face index,
encoder id), and images already in the collection are never re-embedded.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facesearch.encoders import FaceEncoder
from facesearch.errors import ImageError
from facesearch.images import LoadedImage, SkippedFile, iter_image_files, load_image
from facesearch.settings import Settings
from facesearch.store import FaceRecord, FaceStore

log = logging.getLogger(__name__)

CHUNK_IMAGES = 8  # decoded images held at once: bounds memory for huge photos

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


def plan_jobs(
    paths: Sequence[Path], settings: Settings, identity_from_folder: bool = False, identity: str = ""
) -> tuple[list[IndexJob], list[SkippedFile]]:
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


def _load_all(jobs: Sequence[IndexJob], settings: Settings, pool: ThreadPoolExecutor) -> list[LoadedImage | ImageError]:
    def load(job: IndexJob) -> LoadedImage | ImageError:
        try:
            return load_image(job.path, settings.images)
        except ImageError as exc:
            return exc
        except MemoryError:
            return ImageError("out_of_memory", "image too large to decode in available memory")

    return list(pool.map(load, jobs))


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
    return [
        FaceRecord(**{**r.__dict__, "image_paths": paths, "image_path": paths[0], "identity": new_identity}) for r in records
    ]


def build_records(loaded: LoadedImage, faces: Iterable[Any], path: str, identity: str, encoder_id: str) -> list[FaceRecord]:
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
    """Index ``jobs`` into ``collection``; bad files are reported in the result, never raised."""
    report = report or IndexReport(collection=collection, encoder=encoder.encoder_id)
    report.images_seen += len(jobs)
    with ThreadPoolExecutor(settings.images.load_workers, thread_name_prefix="decode") as pool:
        for number, chunk in enumerate(_chunks(jobs, CHUNK_IMAGES), start=1):
            _index_chunk(chunk, _load_all(chunk, settings, pool), store, encoder, collection, force, report)
            log.debug("chunk %d written: %d images so far, %d faces", number, number * CHUNK_IMAGES, report.faces_indexed)
            if progress:
                progress(len(chunk))
    if report.faces_indexed:
        store.flush(collection)
    return report


def _index_chunk(
    chunk: Sequence[IndexJob],
    loaded: Sequence[LoadedImage | ImageError],
    store: FaceStore,
    encoder: FaceEncoder,
    collection: str,
    force: bool,
    report: IndexReport,
) -> None:
    good: list[tuple[IndexJob, LoadedImage]] = []
    for job, item in zip(chunk, loaded, strict=True):
        if isinstance(item, ImageError):
            report.skip(job.path, item.reason, item.detail)
        else:
            good.append((job, item))
    existing = store.records_for_images(collection, sorted({img.sha256 for _, img in good}))
    to_embed: list[tuple[IndexJob, LoadedImage]] = []
    updates: list[FaceRecord] = []
    for job, img in good:
        if img.sha256 in existing and not force:
            merged = _merge_existing(existing[img.sha256], canonical_path(job.path), job.identity)
            if merged is not None:
                existing[img.sha256] = merged
                updates.extend(merged)
            report.images_unchanged += 1
        else:
            to_embed.append((job, img))
    embedded_now: set[str] = set()
    if to_embed:
        faces_per_image = encoder.encode_loaded([img for _, img in to_embed])
        for (job, img), faces in zip(to_embed, faces_per_image, strict=True):
            path = canonical_path(job.path)
            if img.sha256 in embedded_now:  # the same bytes twice in one chunk: one set of rows, both paths
                merged = _merge_existing(existing[img.sha256], path, job.identity)
                if merged is not None:
                    existing[img.sha256] = merged
                    updates.extend(merged)
                report.images_unchanged += 1
                continue
            if not faces:
                report.skip(job.path, "no_face", "no face detected")
                continue
            previous = existing.get(img.sha256, [])
            identity = job.identity or (previous[0].identity if previous else "")
            records = build_records(img, faces, path, identity, encoder.encoder_id)
            if previous:  # --force: keep every known path, drop rows for faces no longer detected
                paths = sorted({path, *(p for r in previous for p in r.image_paths if os.path.exists(p))})
                records = [FaceRecord(**{**r.__dict__, "image_paths": paths, "image_path": paths[0]}) for r in records]
                stale = [r.id for r in previous if r.face_index >= len(records)]
                if stale:
                    store.delete_ids(collection, stale)
            embedded_now.add(img.sha256)
            existing[img.sha256] = records
            updates.extend(records)
            report.images_indexed += 1
            report.faces_indexed += len(records)
    if updates:
        latest = {r.id: r for r in updates}  # last write per key wins
        store.upsert(collection, list(latest.values()))
