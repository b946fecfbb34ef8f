"""Query commands: search, identify, duplicates, stats, calibrate, and the HTTP server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from facesearch.cli import lean_exit
from facesearch.cli.common import JsonOpt, app, emit, progress_bar, run_command, stdout
from facesearch.settings import Settings


@app.command()
def search(
    ctx: typer.Context,
    image: Annotated[Path, typer.Argument(help="Query photo.")],
    k: Annotated[int | None, typer.Option("-k", help="Hits per face (default search.k).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Which photos contain the faces in IMAGE? Top-k stored faces per query face."""

    def body(settings: Settings) -> None:
        from facesearch.serve.query import search_image

        lean_exit.request()
        emit(search_image(settings, image, k), as_json, _render_search)

    run_command(ctx, body)


def _render_search(doc: dict[str, Any]) -> None:
    for i, face in enumerate(doc["faces"]):
        table = Table("#", "distance", "same person", "identity", "image", "face", title=f"face {i} at {face['bbox']} (p={face['det_prob']})")
        for rank, hit in enumerate(face["hits"], 1):
            same = {True: "[green]yes[/]", False: "[dim]no[/]", None: "?"}[hit.get("same_person")]
            table.add_row(str(rank), f"{hit['distance']:.3f}", same, hit["identity"] or "-", hit["image_path"], str(hit["face_index"]))
        stdout.print(table)


@app.command()
def identify(
    ctx: typer.Context,
    image: Annotated[Path, typer.Argument(help="Photo of the person(s) to identify.")],
    threshold: Annotated[float | None, typer.Option(help="Max distance to an enrolled face (default: calibrated per encoder).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Who is this? The identity of the nearest enrolled face within the threshold, else unknown."""

    def body(settings: Settings) -> None:
        from facesearch.serve.query import identify_image

        lean_exit.request()
        emit(identify_image(settings, image, threshold), as_json, _render_identify)

    run_command(ctx, body)


def _render_identify(doc: dict[str, Any]) -> None:
    table = Table("face", "identity", "distance", title=f"{doc['query']} (threshold {doc['threshold']})")
    for face in doc["faces"]:
        dist = "-" if face["distance"] is None else f"{face['distance']:.3f}"
        table.add_row(str(face["bbox"]), face["identity"] or "[dim]unknown[/]", dist)
    stdout.print(table)


@app.command()
def duplicates(
    ctx: typer.Context,
    threshold: Annotated[float | None, typer.Option(help="Max face distance between copies (default per encoder).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Which photos are near-duplicates (resized, recompressed, lightly cropped copies)?"""

    def body(settings: Settings) -> None:
        from facesearch.serve.duplicates import duplicates_json, find_duplicates
        from facesearch.store import FaceStore

        with FaceStore(settings.milvus) as store:
            collection = store.resolve(settings.milvus.alias)
            encoder_id = store.encoder_of(collection) or ""
            limit = threshold if threshold is not None else settings.duplicates.thresholds.get(encoder_id, 0.5)
            dup = settings.duplicates
            with progress_bar("comparing faces", store.count(collection)) as advance:
                groups = find_duplicates(
                    store,
                    collection,
                    limit,
                    dup.k,
                    settings.index.nprobe,
                    near_identical=dup.near_identical.get(encoder_id, 0.0),
                    phash_max_bits=dup.phash_max_bits,
                    layout_tolerance=dup.layout_tolerance,
                    batch=dup.query_batch,
                    progress=advance,
                )
        emit(duplicates_json(groups, limit), as_json, _render_duplicates)

    run_command(ctx, body)


def _render_duplicates(doc: dict[str, Any]) -> None:
    if not doc["groups"]:
        stdout.print("no duplicate photos found")
    for g in doc["groups"]:
        stdout.print(f"[bold]{len(g['images'])} copies[/] (max face distance {g['max_distance']:.3f}):")
        for path in g["images"]:
            stdout.print(f"  {path}")


@app.command()
def stats(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Faces, images, encoder and the index in force (as Milvus reports it)."""

    def body(settings: Settings) -> None:
        from facesearch.serve.admin import collection_stats
        from facesearch.store import FaceStore

        lean_exit.request()
        with FaceStore(settings.milvus) as store:
            doc = collection_stats(store, store.resolve(settings.milvus.alias))
        emit(doc, as_json, lambda d: stdout.print_json(data=d))

    run_command(ctx, body)


@app.command()
def calibrate(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="Labelled faces: one sub-folder per person.")],
    as_json: JsonOpt = False,
) -> None:
    """Suggest identify.thresholds.<encoder> from labelled photos (balanced-accuracy optimum)."""

    def body(settings: Settings) -> None:
        from facesearch.errors import BadInputError
        from facesearch.ingest.images import load_image
        from facesearch.ingest.indexer import plan_jobs
        from facesearch.models.encoders import build_encoder
        from facesearch.serve.calibrate import calibrate_threshold

        jobs, _ = plan_jobs([folder], settings, identity_from_folder=True)
        encoder = build_encoder(settings)
        vectors, labels = [], []
        with progress_bar("embedding", len(jobs)) as advance:
            for job in jobs:
                faces = encoder.encode_loaded([load_image(job.path, settings.images)])[0]
                if len(faces) == 1:
                    vectors.append(faces[0].embedding)
                    labels.append(job.identity)
                advance(1)
        if len(set(labels)) < 2:
            raise BadInputError(f"{folder} needs sub-folders for at least two people with one face per photo")
        import numpy as np

        doc = {"encoder": encoder.encoder_id, "faces": len(labels), "identities": len(set(labels))}
        doc |= calibrate_threshold(np.stack(vectors), labels).as_dict()
        emit(doc, as_json, lambda d: stdout.print_json(data=d))

    run_command(ctx, body)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to bind (default api.host); beyond loopback needs api.api_key.")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default api.port).")] = None,
) -> None:
    """Serve the HTTP API and the search page (uvicorn, one worker; OpenAPI at /docs)."""

    def body(settings: Settings) -> None:
        from facesearch.serve.api.app import serve as serve_api

        serve_api(settings, host=host, port=port)

    run_command(ctx, body)
