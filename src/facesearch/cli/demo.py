"""``make demo``: the whole product on the bundled sample faces, offline.

1. lays the samples out as a dataset in ``paths.images_dir`` (people/<Name>/ for the johns, one
   photo per person held out; groups/ for the group photos);
2. runs the Prefect re-index flow: DVC version, great-expectations gates, incremental embedding,
   candidate collection, nlist x nprobe sweep in MLflow, promotion behind ``face_search``;
3. identifies the held-out photos and searches with a group photo through the alias.
"""

from __future__ import annotations

import filecmp
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from facesearch.errors import BadInputError
from facesearch.ingest.images import load_image
from facesearch.serve.admin import collection_stats
from facesearch.serve.query import QueryService
from facesearch.settings import Settings

log = logging.getLogger(__name__)


def held_out_split(johns: Path) -> tuple[list[Path], list[Path]]:
    """Per person folder: all photos but the last are enrolled, the last is held out."""
    enrolled, held_out = [], []
    for person in sorted(p for p in johns.iterdir() if p.is_dir()):
        photos = sorted(person.glob("*.jpg"))
        enrolled += photos[:-1]
        held_out.append(photos[-1])
    return enrolled, held_out


def _place(src: Path, dst: Path) -> None:
    if dst.exists() and filecmp.cmp(src, dst, shallow=False):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def prepare_demo_dataset(samples: Path, images_dir: Path) -> list[Path]:
    """Copy the samples into the dataset layout; returns the held-out photos (not in the dataset)."""
    johns = samples / "johns"
    if not johns.is_dir():
        raise BadInputError(f"sample faces not found at {samples} (run from the repository root)")
    enrolled, held_out = held_out_split(johns)
    for photo in enrolled:
        _place(photo, images_dir / "people" / photo.parent.name / photo.name)
    for folder in ("group_photos", "voc_groups"):
        for photo in sorted((samples / folder).glob("*.jpg")):
            _place(photo, images_dir / "groups" / photo.name)
    return held_out


def run_demo(
    settings: Settings, samples: Path, out: Console, config: list[str] | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """The demo; ``config``/``overrides`` are the command's own, so the flow builds the store this reads."""
    from flows.reindex import reindex_flow

    started = time.perf_counter()
    images_dir = Path(settings.paths.images_dir)
    out.rule("1. the dataset")
    held_out = prepare_demo_dataset(samples, images_dir)
    out.print(f"sample faces laid out in {images_dir}/ (people/<Name>/ are enrolled); {len(held_out)} photos held out")

    out.rule("2. re-index flow (Prefect): DVC version -> validate -> embed -> load -> sweep (MLflow) -> promote")
    result = reindex_flow(config=config, overrides=overrides, force=True)
    embed = result["embed"]
    promotion = result["promotion"]
    out.print(
        f"dataset version {result['dataset_version']['md5'][:8]} ({result['dataset_version']['nfiles']} files); "
        f"embedded {embed['images_embedded']} new images, reused {embed['images_reused']} from the cache ({embed['encoder']})"
    )
    out.print(
        f"promoted [cyan]{promotion['collection']}[/] behind alias [bold]{promotion['alias']}[/]: "
        f"IVF_FLAT nlist={promotion['nlist']} nprobe={promotion['nprobe']} recall@k={promotion['recall']:.3f} "
        f"p95={promotion['p95_ms']:.1f} ms ({promotion['reason']})"
    )

    with QueryService(settings) as service:
        out.rule("3. who is this? (photos held out of the dataset)")
        table = Table("held-out photo", "true identity", "identified as", "distance")
        correct = 0
        for path in held_out:
            face = service.identify(load_image(path, settings.images))["faces"][0]
            ok = face["identity"] == path.parent.name
            correct += ok
            table.add_row(path.name, path.parent.name, f"{'[green]' if ok else '[red]'}{face['identity'] or 'unknown'}[/]", f"{face['distance']:.3f}")
        out.print(table)
        out.print(f"{correct}/{len(held_out)} held-out photos identified correctly")

        out.rule("4. which photos contain these faces? (a group photo as the query)")
        query = samples / "group_photos" / "sample1.jpg"
        for i, face in enumerate(service.search(load_image(query, settings.images), k=3)["faces"]):
            hits = ", ".join(f"{Path(h['image_path']).name}#{h['face_index']} ({h['distance']:.2f})" for h in face["hits"])
            out.print(f"face {i} at {[round(v) for v in face['bbox']]}: {hits}")
        stats = collection_stats(service.store, service.target()[0])
        people = _show_people(service, settings, out)

    out.rule("where the data went")
    out.print(
        f"Milvus      {settings.milvus.uri}: alias {settings.milvus.alias} -> {stats['collection']}, {stats['faces']} faces "
        f"from {stats['images']} photos, {stats['dim']}-d {stats['encoder']}, index {stats['index']['type']} nlist={stats['index']['nlist']}\n"
        f"DVC         data.dvc tracks {images_dir} (remote: {settings.dataset.dvc_remote})\n"
        f"embeddings  {settings.paths.embeddings_dir}/ (parquet cache)   reports: {settings.paths.reports_dir}/\n"
        f"MLflow      {settings.tracking.mlflow_uri} (experiment {settings.tracking.experiment}); UI: make mlflow-ui\n"
        f"demo finished in {time.perf_counter() - started:.1f} s"
    )
    return {"identified": correct, "held_out": len(held_out), "promotion": promotion, "people": people}


def _show_people(service: QueryService, settings: Settings, out: Console) -> dict[str, Any]:
    """Step 5: the faces grouped into persons (enrolled names seed them; the group photos' strangers stay apart)."""
    from facesearch.serve.people import PeopleService
    from facesearch.serve.people_cluster import cluster_people

    out.rule("5. who is in the photos? (facesearch people cluster)")
    collection = service.target()[0]
    found = cluster_people(service.store, settings, collection)
    table = Table("person", "faces", "photos of")
    for person in PeopleService(service.store, collection).list()["people"]:
        table.add_row(person["display_name"], str(person["faces"]), Path(person["cover"]["image_path"]).parent.name if person["cover"] else "-")
    out.print(table)
    out.print(
        f"{found['persons']} people among {found['faces']} faces; {found['unassigned']} faces belong to nobody yet "
        f"(a person needs {found['min_faces']} faces within {found['threshold']} of each other)"
    )
    return found
