"""Pipeline commands: validate, embed, sweep, promote, reindex (the Prefect flow), and the demo."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated

import typer

from facesearch.cli.common import CliState, JsonOpt, OutOpt, _emit_to, app, emit, progress_bar, run_command, stdout
from facesearch.settings import Settings

# Prefect gives its temporary API server 20 s to start; it takes ~19 s here when quiet, so a busy machine failed runs.
EPHEMERAL_STARTUP_S = "120"

log = logging.getLogger(__name__)


def prefect_for_a_busy_machine(settings: Settings) -> None:
    """Give the flow a Prefect API that cannot fail it for starting slowly.

    ``PREFECT_API_URL`` set: used as is. Else a server answering at ``schedule.prefect_api_url``
    (``make prefect-ui`` / ``make schedule``) is reused, and the run shows in its UI. Else Prefect's
    temporary server, with a start-up timeout a busy machine meets (and no client version check
    against it: the temporary server is the installed Prefect, and under load the check failed runs).
    """
    if not os.environ.get("PREFECT_API_URL"):
        from flows.common import running_prefect_api

        if running_prefect_api(settings.schedule.prefect_api_url):
            os.environ["PREFECT_API_URL"] = settings.schedule.prefect_api_url
            log.info("using the Prefect server at %s", settings.schedule.prefect_api_url)
            return
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", EPHEMERAL_STARTUP_S)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # its telemetry heartbeat phones home (and logged tracebacks)
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.setdefault("PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED", "false")


@app.command()
def validate(ctx: typer.Context, as_json: JsonOpt = False, out: OutOpt = None) -> None:
    """Validate the dataset folder (paths.images_dir) with the great-expectations manifest suite."""

    def body(settings: Settings) -> None:
        from facesearch.pipeline import steps as pipeline
        from facesearch.pipeline.validate import require

        with progress_bar("reading images", None) as advance:
            manifest = pipeline.build_manifest(settings, advance)
        report = pipeline.check_manifest(manifest, settings)
        _emit_to(report.to_dict(), out, as_json)
        require(report)

    run_command(ctx, body)


@app.command()
def embed(ctx: typer.Context, as_json: JsonOpt = False, out: OutOpt = None) -> None:
    """Embed new images of the dataset into the cache (paths.embeddings_dir), then validate the embeddings."""

    def body(settings: Settings) -> None:
        from facesearch.pipeline import steps as pipeline
        from facesearch.pipeline.validate import require

        manifest = pipeline.build_manifest(settings)
        with progress_bar("embedding", int(manifest["readable"].sum())) as advance:
            report = pipeline.embed_images(manifest, settings, advance)
        quality = pipeline.check_embeddings(manifest, settings, report.encoder)
        _emit_to({**report.as_dict(), "validation": quality.to_dict()}, out, as_json)
        require(quality)

    run_command(ctx, body)


@app.command()
def sweep(ctx: typer.Context, as_json: JsonOpt = False, out: OutOpt = None) -> None:
    """Load the dataset's cached embeddings into a new candidate collection and sweep the index types (MLflow)."""

    def body(settings: Settings) -> None:
        from facesearch.models.encoders import build_encoder
        from facesearch.pipeline import steps as pipeline
        from facesearch.pipeline.versioning import recorded_version

        version = recorded_version(settings)
        manifest = pipeline.build_manifest(settings)
        encoder_id = build_encoder(settings).encoder_id
        import uuid

        candidate = pipeline.load_candidate_step(manifest, settings, version, encoder_id, run_key=f"cli-sweep-{uuid.uuid4()}")
        result, runs = pipeline.sweep_candidate(settings, candidate)
        doc = {"collection": candidate.collection, "dataset_version": version.md5, "mlflow_run_id": runs.parent_run_id, **result.as_dict()}
        _emit_to(doc, out, as_json)

    run_command(ctx, body)


@app.command()
def promote(
    ctx: typer.Context,
    rollback: Annotated[bool, typer.Option("--rollback", help="Point the alias back at the previous collection.")] = False,
    run_id: Annotated[str | None, typer.Option(help="MLflow sweep run to promote (default: the latest).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Promote the best configuration of the latest sweep (or --rollback)."""

    def body(settings: Settings) -> None:
        from facesearch.errors import FaceSearchError
        from facesearch.pipeline import steps as pipeline
        from facesearch.pipeline.tracking import latest_sweep_run, sweep_for_promotion

        if rollback:
            emit(pipeline.rollback_step(settings).as_dict(), as_json, lambda d: stdout.print_json(data=d))
            return
        parent = run_id or latest_sweep_run(settings.tracking)
        if parent is None:
            raise FaceSearchError("no sweep run in MLflow to promote: run `facesearch sweep` or `facesearch reindex` first")
        result, runs = sweep_for_promotion(settings.tracking, parent)  # a sweep that died: clear error, alias untouched
        promotion = pipeline.promote_best(settings, result.collection, result, runs)
        emit(promotion.as_dict(), as_json, lambda d: stdout.print(promotion.to_markdown()))

    run_command(ctx, body)


@app.command()
def reindex(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option(help="Build and sweep a new candidate even if nothing changed.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the Prefect re-index flow: version (DVC), validate, embed, load, sweep (MLflow), promote."""

    def body(settings: Settings) -> None:
        from facesearch.ingest.dataset_add import require_photos
        from facesearch.pipeline.compute import require_scheduler

        require_photos(settings)  # a fresh checkout: one line saying where photos go, before Prefect starts
        require_scheduler(settings.compute)  # an unreachable Dask scheduler fails here, in seconds, not mid-flow
        prefect_for_a_busy_machine(settings)
        from flows.reindex import reindex_flow

        state: CliState = ctx.obj
        doc = reindex_flow(config=[str(p) for p in state.config_files], overrides=state.overrides, force=force)
        emit(json.loads(json.dumps(doc, default=str)), as_json, lambda d: stdout.print_json(data=d))

    run_command(ctx, body)


@app.command()
def demo(
    ctx: typer.Context,
    samples: Annotated[Path, typer.Option(help="The bundled sample faces.")] = Path("samples/faces"),
) -> None:
    """Offline demo on the bundled samples: re-index flow (version, validate, embed, sweep, promote), identify, search."""

    def body(settings: Settings) -> None:
        from facesearch.cli.demo import run_demo

        prefect_for_a_busy_machine(settings)
        state: CliState = ctx.obj
        run_demo(settings, samples, stdout, [str(p) for p in state.config_files], state.overrides)

    run_command(ctx, body)
