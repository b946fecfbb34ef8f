"""``facesearch`` command line (typer). Progress and logs go to stderr; ``--json`` puts one JSON document on stdout.

Exit codes: 0 ok, 2 bad input (unreadable image, no face in the query, bad config), 1 anything else.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from facesearch.errors import FaceSearchError
from facesearch.logging_setup import configure_logging
from facesearch.settings import Settings, load_settings, parse_overrides

log = logging.getLogger("facesearch.cli.app")

app = typer.Typer(add_completion=False, no_args_is_help=True, help="FaceSearch: find faces in photo folders with Milvus.")
stdout = Console()
stderr = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]


@dataclass
class CliState:
    config_files: list[Path] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    verbose: int = 0
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_files, parse_overrides(self.overrides))
            configure_logging(self._settings.logging.level, self.verbose)
        return self._settings


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[list[Path], typer.Option("--config", "-c", help="YAML overlay on configs/default.yaml (repeatable).")] = [],  # noqa: B006
    set_: Annotated[list[str], typer.Option("--set", help="Override one setting: section.key=value (repeatable).")] = [],  # noqa: B006
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-v debug).")] = 0,
) -> None:
    configure_logging("INFO", verbose)
    ctx.obj = CliState(config_files=list(config), overrides=list(set_), verbose=verbose)


def run_command(ctx: typer.Context, body: Callable[[Settings], Any]) -> Any:
    """Run ``body`` with settings loaded; map errors to one stderr line and the right exit code."""
    state: CliState = ctx.obj
    try:
        return body(state.settings)
    except FaceSearchError as exc:
        log.debug("command failed", exc_info=True)
        stderr.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        stderr.print("[bold red]interrupted[/]")
        raise typer.Exit(130) from None
    except Exception as exc:
        log.debug("unexpected failure", exc_info=True)
        stderr.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {exc} (run with -v for a traceback)", soft_wrap=True)
        if state.verbose:
            stderr.print_exception()
        raise typer.Exit(1) from None


def emit(doc: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], None]) -> None:
    if as_json:
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    else:
        render(doc)


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr; yields an ``advance(n)`` callback."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


# -- commands ---------------------------------------------------------------------------------
@app.command()
def index(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders (walked recursively).")],
    identity_from_folder: Annotated[bool, typer.Option(help="Label faces with their parent folder's name.")] = False,
    identity: Annotated[str, typer.Option(help="Label every face in these images with this identity.")] = "",
    force: Annotated[bool, typer.Option(help="Re-embed images that are already indexed.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Detect, embed and store every face under PATHS. Bad files are reported and skipped."""

    def body(settings: Settings) -> None:
        from facesearch.ingest import indexer
        from facesearch.serve.serving import encoder_for_store, ingest_collection
        from facesearch.store import FaceStore

        jobs, skipped = indexer.plan_jobs(paths, settings, identity_from_folder, identity)
        with FaceStore(settings.milvus) as store:
            encoder = encoder_for_store(store, settings)
            collection = ingest_collection(store, settings, encoder)
            report = indexer.IndexReport(collection=collection, encoder=encoder.encoder_id)
            for s in skipped:
                report.skip(s.path, s.reason, s.detail)
            report.images_seen += len(skipped)
            with progress_bar("indexing", len(jobs)) as advance:
                indexer.index_jobs(jobs, settings, store, encoder, collection, force=force, progress=advance, report=report)
        emit(report.as_dict(), as_json, _render_index)

    run_command(ctx, body)


def _render_index(doc: dict[str, Any]) -> None:
    stdout.print(
        f"[bold]{doc['images_indexed']}[/] images indexed ({doc['faces_indexed']} faces), "
        f"{doc['images_unchanged']} unchanged, {len(doc['images_skipped'])} skipped, of {doc['images_seen']} seen "
        f"-> collection [cyan]{doc['collection']}[/] ({doc['encoder']})"
    )
    if doc["images_skipped"]:
        table = Table("skipped file", "reason", "detail", title="Skipped")
        for s in doc["images_skipped"]:
            table.add_row(s["path"], s["reason"], s.get("detail", ""))
        stdout.print(table)


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

        emit(search_image(settings, image, k), as_json, _render_search)

    run_command(ctx, body)


def _render_search(doc: dict[str, Any]) -> None:
    for i, face in enumerate(doc["faces"]):
        table = Table("#", "distance", "identity", "image", "face", title=f"face {i} at {face['bbox']} (p={face['det_prob']})")
        for rank, hit in enumerate(face["hits"], 1):
            table.add_row(str(rank), f"{hit['distance']:.3f}", hit["identity"] or "-", hit["image_path"], str(hit["face_index"]))
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
def delete(
    ctx: typer.Context,
    image: Annotated[Path | None, typer.Option(help="Forget this photo's faces.")] = None,
    identity: Annotated[str | None, typer.Option(help="Forget every face labelled with this identity.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete faces by photo path or by identity."""

    def body(settings: Settings) -> None:
        from facesearch.serve.admin import delete_identity, delete_image
        from facesearch.errors import BadInputError
        from facesearch.store import FaceStore

        if (image is None) == (identity is None):
            raise BadInputError("give exactly one of --image PATH or --identity NAME")
        with FaceStore(settings.milvus) as store:
            collection = store.resolve(settings.milvus.alias)
            doc = delete_image(store, collection, image) if image is not None else delete_identity(store, collection, identity or "")
        emit(doc, as_json, lambda d: stdout.print(f"deleted {d['deleted']} faces"))

    run_command(ctx, body)


@app.command()
def stats(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Faces, images, encoder and the index in force (as Milvus reports it)."""

    def body(settings: Settings) -> None:
        from facesearch.serve.admin import collection_stats
        from facesearch.store import FaceStore

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
        from facesearch.serve.calibrate import calibrate_threshold
        from facesearch.models.encoders import build_encoder
        from facesearch.errors import BadInputError
        from facesearch.ingest.images import load_image
        from facesearch.ingest.indexer import plan_jobs

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


# -- pipeline (also the DVC stages in dvc.yaml) ----------------------------------------------
OutOpt = Annotated[Path | None, typer.Option("--out", help="Also write the JSON document to this file.")]


def _emit_to(doc: dict[str, Any], out: Path | None, as_json: bool) -> None:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    emit(doc, as_json, lambda d: stdout.print_json(data=json.loads(json.dumps(d, default=str))))


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
    """Load the dataset's cached embeddings into a new candidate collection and sweep nlist x nprobe (MLflow)."""

    def body(settings: Settings) -> None:
        from facesearch.pipeline import steps as pipeline
        from facesearch.models.encoders import build_encoder
        from facesearch.pipeline.versioning import recorded_version

        version = recorded_version(settings)
        manifest = pipeline.build_manifest(settings)
        encoder_id = build_encoder(settings).encoder_id
        candidate = pipeline.load_candidate_step(manifest, settings, version, encoder_id)
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
        from facesearch.pipeline import steps as pipeline
        from facesearch.errors import FaceSearchError
        from facesearch.pipeline.promote import rollback as do_rollback
        from facesearch.store import FaceStore
        from facesearch.pipeline.tracking import client_for, latest_sweep_run, load_sweep, SweepRuns

        if rollback:
            with FaceStore(settings.milvus) as store:
                emit(do_rollback(store, settings).as_dict(), as_json, lambda d: stdout.print_json(data=d))
            return
        parent = run_id or latest_sweep_run(settings.tracking)
        if parent is None:
            raise FaceSearchError("no sweep run in MLflow to promote: run `facesearch sweep` or `facesearch reindex` first")
        result = load_sweep(settings.tracking, parent)
        tags = client_for(settings.tracking).get_run(parent).data.tags
        runs = SweepRuns("", parent, {int(k): v for k, v in json.loads(tags.get("children", "{}")).items()})
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

        run_demo(settings, samples, stdout)

    run_command(ctx, body)


store_app = typer.Typer(help="A local Milvus standalone server shared by every FaceSearch process on this machine.")
app.add_typer(store_app, name="store")


def _store_doc(state: Any, settings: Settings) -> dict[str, Any]:
    if state is None:
        return {"running": False, "server_dir": str(settings.milvus.server_dir)}
    return {"running": True, "uri": state.uri, "pid": state.pid, "server_dir": state.base_dir,
            "use": f"export FACESEARCH__MILVUS__URI={state.uri}"}


@store_app.command("start")
def store_start(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Start (or find) the local Milvus 2.3.5 standalone in milvus.server_dir; it keeps running after this command."""

    def body(settings: Settings) -> None:
        from facesearch.store.local_server import LocalMilvusServer

        state = LocalMilvusServer(Path(settings.milvus.server_dir)).ensure_running()
        emit(_store_doc(state, settings), as_json, lambda d: stdout.print(f"Milvus running at {d['uri']} (pid {d['pid']})\n{d['use']}"))

    run_command(ctx, body)


@store_app.command("status")
def store_status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Is the local Milvus standalone running, and where?"""

    def body(settings: Settings) -> None:
        from facesearch.store.local_server import LocalMilvusServer

        doc = _store_doc(LocalMilvusServer(Path(settings.milvus.server_dir)).running(), settings)
        emit(doc, as_json, lambda d: stdout.print(f"running at {d['uri']} (pid {d['pid']})" if d["running"] else "not running"))

    run_command(ctx, body)


@store_app.command("stop")
def store_stop(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Stop the local Milvus standalone (its data stays in milvus.server_dir)."""

    def body(settings: Settings) -> None:
        from facesearch.store.local_server import LocalMilvusServer

        server = LocalMilvusServer(Path(settings.milvus.server_dir))
        was = server.running()
        server.stop()
        emit({"stopped": was is not None}, as_json, lambda d: stdout.print("stopped" if d["stopped"] else "was not running"))

    run_command(ctx, body)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
