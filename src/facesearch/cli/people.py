"""``facesearch people cluster|list|show|name|merge|hide|photos|evaluate``: persons found among the stored faces."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from facesearch.cli.common import JsonOpt, emit, progress_bar, run_command, stdout
from facesearch.settings import Settings

people_app = typer.Typer(help="People: faces grouped into persons (clustering), named, merged, hidden.", no_args_is_help=True)

PersonArg = Annotated[str, typer.Argument(help="Person id, name, or display name ('Person 12').")]


def _with_people(settings: Settings, action: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    from facesearch.serve.people import PeopleService
    from facesearch.store import FaceStore

    with FaceStore(settings.milvus) as store:
        return action(PeopleService(store, store.resolve(settings.milvus.alias)))


@people_app.command("cluster")
def people_cluster(
    ctx: typer.Context,
    full: Annotated[bool, typer.Option("--full", help="Re-cluster every face (names kept), not only faces without a person.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Group the served faces into persons (range search within the same-person threshold, DBSCAN rule)."""

    def body(settings: Settings) -> None:
        from facesearch.serve.people_cluster import cluster_people
        from facesearch.store import FaceStore

        with FaceStore(settings.milvus) as store:
            collection = store.resolve(settings.milvus.alias)
            with progress_bar("clustering faces", None) as advance:
                doc = cluster_people(store, settings, collection, full=full, progress=advance)
        emit(
            doc,
            as_json,
            lambda d: stdout.print(
                f"{d['persons']} people among {d['faces']} faces ({d['mode']}: {d['clustered']} clustered, {d['new_persons']} new people, "
                f"{d['unassigned']} faces without a person; threshold {d['threshold']}, min_faces {d['min_faces']}) in {d['seconds']} s"
            ),
        )

    run_command(ctx, body)


@people_app.command("list")
def people_list(
    ctx: typer.Context,
    hidden: Annotated[bool, typer.Option("--hidden", help="Include hidden people.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Every person with a face count, largest first."""
    run_command(ctx, lambda s: emit(_with_people(s, lambda p: p.list(include_hidden=hidden)), as_json, render_people))


def render_people(doc: dict[str, Any]) -> None:
    table = Table("id", "name", "faces", "hidden", title=f"people of {doc['collection']}")
    for p in doc["people"]:
        table.add_row(str(p["id"]), p["display_name"], str(p["faces"]), "yes" if p["hidden"] else "")
    stdout.print(table)


def _render_person(doc: dict[str, Any]) -> None:
    stdout.print(f"[bold]{doc['display_name']}[/] (id {doc['id']}{', hidden' if doc['hidden'] else ''}): {doc['faces']} faces")
    for face in doc.get("face_list", []):
        stdout.print(f"  {face['image_path']} #{face['face_index']}")


@people_app.command("show")
def people_show(ctx: typer.Context, person: PersonArg, as_json: JsonOpt = False) -> None:
    """One person and each of its faces."""
    run_command(ctx, lambda s: emit(_with_people(s, lambda p: p.show(person)), as_json, _render_person))


@people_app.command("name")
def people_name(
    ctx: typer.Context, person: PersonArg, name: Annotated[str, typer.Argument(help="New name ('' = unnamed again).")], as_json: JsonOpt = False
) -> None:
    """Name (rename) a person."""
    run_command(ctx, lambda s: emit(_with_people(s, lambda p: p.update(person, name=name)), as_json, _render_person))


@people_app.command("hide")
def people_hide(
    ctx: typer.Context,
    person: PersonArg,
    unhide: Annotated[bool, typer.Option("--unhide", help="Show the person again.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Hide a person from `people list` and the People view (its faces stay assigned)."""
    run_command(ctx, lambda s: emit(_with_people(s, lambda p: p.update(person, hidden=not unhide)), as_json, _render_person))


@people_app.command("merge")
def people_merge(
    ctx: typer.Context,
    person: PersonArg,
    other: Annotated[str, typer.Argument(help="The person merged into PERSON (it disappears).")],
    as_json: JsonOpt = False,
) -> None:
    """Merge OTHER into PERSON: every face of OTHER becomes PERSON's."""
    run_command(ctx, lambda s: emit(_with_people(s, lambda p: p.merge(person, other)), as_json, _render_person))


@people_app.command("photos")
def people_photos(ctx: typer.Context, person: PersonArg, as_json: JsonOpt = False) -> None:
    """Every photo a person appears in."""

    def render(doc: dict[str, Any]) -> None:
        stdout.print(f"[bold]{doc['person']['display_name']}[/]: {len(doc['photos'])} photos")
        for photo in doc["photos"]:
            stdout.print(f"  {photo['image_path']}")

    run_command(ctx, lambda s: emit(_with_people(s, lambda p: p.photos(person)), as_json, render))


@people_app.command("evaluate")
def people_evaluate(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="Labelled photos: FOLDER/<person>/*.jpg, already indexed.")],
    as_json: JsonOpt = False,
) -> None:
    """Score the stored clustering against labelled folders: pairwise precision/recall, BCubed F1, split/merged."""

    def body(settings: Settings) -> None:
        from facesearch.serve.people_eval import evaluate_folder
        from facesearch.store import FaceStore

        with FaceStore(settings.milvus) as store:
            doc = evaluate_folder(store, settings, store.resolve(settings.milvus.alias), folder)
        emit(doc, as_json, lambda d: stdout.print_json(data=d))

    run_command(ctx, body)
