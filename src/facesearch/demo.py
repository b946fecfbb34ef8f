"""``make demo``: the whole product on the bundled sample faces, offline.

Indexes the johns (one photo per person held out, identity from folder) and the group photos,
identifies the held-out photos, and searches with a group photo.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from rich.console import Console
from rich.table import Table

from facesearch import indexer
from facesearch.admin import collection_stats
from facesearch.errors import BadInputError
from facesearch.identify import identify_faces, identity_threshold
from facesearch.images import load_image
from facesearch.search import query_faces, search_faces
from facesearch.serving import encoder_for_store, ingest_collection
from facesearch.settings import Settings
from facesearch.store import FaceStore

log = logging.getLogger(__name__)

ProgressFactory = Callable[[str, int], AbstractContextManager[Callable[[int], None]]]


def held_out_split(johns: Path) -> tuple[list[Path], list[Path]]:
    """Per person folder: all photos but the last go in the index, the last is held out."""
    enrolled, held_out = [], []
    for person in sorted(p for p in johns.iterdir() if p.is_dir()):
        photos = sorted(person.glob("*.jpg"))
        enrolled += photos[:-1]
        held_out.append(photos[-1])
    return enrolled, held_out


def run_demo(settings: Settings, samples: Path, out: Console, progress: ProgressFactory) -> None:
    started = time.perf_counter()
    johns = samples / "johns"
    if not johns.is_dir():
        raise BadInputError(f"sample faces not found at {samples} (run from the repository root)")
    enrolled, held_out = held_out_split(johns)
    with FaceStore(settings.milvus) as store:
        encoder = encoder_for_store(store, settings)
        collection = ingest_collection(store, settings, encoder)
        out.rule(f"1. index the samples with {encoder.encoder_id}")
        jobs, skipped = indexer.plan_jobs(enrolled, settings, identity_from_folder=True)
        group_jobs, group_skipped = indexer.plan_jobs([samples / "group_photos", samples / "voc_groups"], settings)
        report = indexer.IndexReport(collection=collection, encoder=encoder.encoder_id)
        for s in skipped + group_skipped:
            report.skip(s.path, s.reason, s.detail)
        with progress("indexing", len(jobs) + len(group_jobs)) as advance:
            indexer.index_jobs([*jobs, *group_jobs], settings, store, encoder, collection, progress=advance, report=report)
        out.print(
            f"{report.images_indexed} photos embedded ({report.faces_indexed} faces), {report.images_unchanged} already indexed, "
            f"{len(report.images_skipped)} skipped: " + ", ".join(f"{Path(s['path']).name} ({s['reason']})" for s in report.images_skipped)
        )

        out.rule("2. who is this? (photos held out of the index)")
        threshold = identity_threshold(settings, encoder.encoder_id)
        table = Table("held-out photo", "true identity", "identified as", "distance")
        correct = 0
        for path in held_out:
            result = identify_faces(store, collection, query_faces(encoder, load_image(path, settings.images)), threshold, settings.index.nprobe)[0]
            correct += result.identity == path.parent.name
            mark = "[green]" if result.identity == path.parent.name else "[red]"
            table.add_row(path.name, path.parent.name, f"{mark}{result.identity or 'unknown'}[/]", f"{result.distance:.3f}")
        out.print(table)
        out.print(f"{correct}/{len(held_out)} held-out photos identified correctly (threshold {threshold})")

        out.rule("3. which photos contain these faces? (a group photo as the query)")
        query = samples / "group_photos" / "sample1.jpg"
        for i, result in enumerate(search_faces(store, collection, query_faces(encoder, load_image(query, settings.images)), 3, settings.index.nprobe)):
            hits = ", ".join(f"{Path(h.image_path).name}#{h.face_index} ({h.distance:.2f})" for h in result.hits)
            out.print(f"face {i} at {[round(v) for v in result.face.bbox]}: {hits}")

        stats = collection_stats(store, collection)
    out.rule("where the data went")
    out.print(
        f"Milvus: {settings.milvus.uri}  collection {stats['collection']} (alias {settings.milvus.alias})\n"
        f"{stats['faces']} faces from {stats['images']} photos, {stats['dim']}-d {stats['encoder']}, "
        f"index {stats['index']['type']} nlist={stats['index']['nlist']} metric={stats['index']['metric']}\n"
        f"demo finished in {time.perf_counter() - started:.1f} s"
    )
