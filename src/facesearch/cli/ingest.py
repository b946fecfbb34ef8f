"""Ingest commands: index photo folders, delete faces."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from facesearch.cli.common import JsonOpt, app, emit, progress_bar, run_command, stdout
from facesearch.settings import Settings


# -- commands ---------------------------------------------------------------------------------
@app.command()
def index(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders (walked recursively).")],
    identity_from_folder: Annotated[bool, typer.Option(help="Label faces with their parent folder's name.")] = False,
    identity: Annotated[str, typer.Option(help="Label every face in these images with this identity.")] = "",
    force: Annotated[bool, typer.Option(help="Re-embed images that are already indexed.")] = False,
    dask: Annotated[
        str | None,
        typer.Option(
            "--dask", metavar="ADDRESS", help="Embed on Dask: 'local' (a LocalCluster) or tcp://host:8786 (default: compute.dask_address, '' = in-process)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Detect, embed and store every face under PATHS. Bad files are reported and skipped."""

    def body(settings: Settings) -> None:
        from facesearch.ingest import indexer
        from facesearch.serve.serving import encoder_for_store, ingest_collection
        from facesearch.store import FaceStore
        from facesearch.store.lite_to_server import maybe_move_to_server

        if dask is not None:
            settings = with_dask_address(settings, dask)
        if settings.compute.dask_address:
            from facesearch.cli.pipeline import prefect_for_a_busy_machine
            from facesearch.pipeline.compute import require_scheduler

            require_scheduler(settings.compute)  # an unreachable scheduler fails here, in seconds, before any photo is read
            prefect_for_a_busy_machine(settings)
        jobs, skipped = indexer.plan_jobs(paths, settings, identity_from_folder, identity)
        with FaceStore(settings.milvus) as store:
            encoder = encoder_for_store(store, settings)
            collection = ingest_collection(store, settings, encoder)
            report = indexer.IndexReport(collection=collection, encoder=encoder.encoder_id)
            for s in skipped:
                report.skip(s.path, s.reason, s.detail)
            report.images_seen += len(skipped)
            embedded = None
            with progress_bar("indexing", len(jobs)) as advance:
                if settings.compute.dask_address:  # shards on Dask through Prefect, rows written here (flows/index.py)
                    from flows.index import index_on_dask

                    _, embedded = index_on_dask(jobs, settings, store, encoder.encoder_id, collection, force=force, progress=advance, report=report)
                else:
                    indexer.index_jobs(jobs, settings, store, encoder, collection, force=force, progress=advance, report=report)
            moved = maybe_move_to_server(store, collection, settings.milvus)
        doc = report.as_dict()
        if settings.compute.dask_address:
            doc["embed"] = embedded.as_dict() if embedded else None
        if moved is not None:
            doc["store_moved_to_server"] = moved.server_dir
        emit(doc, as_json, _render_index)

    run_command(ctx, body)


def with_dask_address(settings: Settings, address: str) -> Settings:
    """``--dask ADDRESS`` over compute.dask_address, validated like the setting (a bad address is a ConfigError)."""
    from facesearch.errors import ConfigError
    from facesearch.settings import ComputeSettings

    try:
        compute = ComputeSettings.model_validate({**settings.compute.model_dump(), "dask_address": address})
    except ValueError as exc:
        raise ConfigError(f"--dask {address!r}: expected '', 'local' or tcp://host:port") from exc
    return settings.model_copy(update={"compute": compute})


def _render_index(doc: dict[str, Any]) -> None:
    stdout.print(
        f"[bold]{doc['images_indexed']}[/] images indexed ({doc['faces_indexed']} faces), "
        f"{doc['images_unchanged']} unchanged, {len(doc['images_skipped'])} skipped, of {doc['images_seen']} seen "
        f"-> collection [cyan]{doc['collection']}[/] ({doc['encoder']})"
    )
    if doc.get("store_moved_to_server"):
        stdout.print(f"The store passed milvus.auto_server_faces and now lives in the local Milvus standalone in {doc['store_moved_to_server']}")
    if doc["images_skipped"]:
        table = Table("skipped file", "reason", "detail", title="Skipped")
        for s in doc["images_skipped"]:
            table.add_row(s["path"], s["reason"], s.get("detail", ""))
        stdout.print(table)


@app.command()
def delete(
    ctx: typer.Context,
    image: Annotated[Path | None, typer.Option(help="Forget this photo's faces.")] = None,
    identity: Annotated[str | None, typer.Option(help="Forget every face labelled with this identity.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete faces by photo path or by identity."""

    def body(settings: Settings) -> None:
        from facesearch.errors import BadInputError
        from facesearch.serve.admin import delete_identity, delete_image
        from facesearch.store import FaceStore

        if (image is None) == (identity is None):
            raise BadInputError("give exactly one of --image PATH or --identity NAME")
        with FaceStore(settings.milvus) as store:
            collection = store.resolve(settings.milvus.alias)
            doc = delete_image(store, collection, image) if image is not None else delete_identity(store, collection, identity or "")
        emit(doc, as_json, lambda d: stdout.print(f"deleted {d['deleted']} faces"))

    run_command(ctx, body)
