"""``facesearch dataset add DIR [--people] [--link]``: photos into the DVC-tracked dataset folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from facesearch.cli.common import JsonOpt, emit, run_command, stdout
from facesearch.settings import Settings

dataset_app = typer.Typer(help="The dataset the re-index flow versions (DVC), validates and indexes: paths.images_dir.")


@dataset_app.command("add")
def dataset_add(
    ctx: typer.Context,
    source: Annotated[Path, typer.Argument(help="A folder of photos (walked recursively).")],
    people: Annotated[bool, typer.Option("--people", help="SOURCE holds one folder per person: enrol them by folder name.")] = False,
    link: Annotated[bool, typer.Option("--link", help="Hard-link instead of copying (same filesystem; no extra space).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Copy (or link) the photos under SOURCE into the dataset; then `facesearch reindex` versions and indexes them."""

    def body(settings: Settings) -> None:
        from facesearch.ingest.dataset_add import add_to_dataset

        report = add_to_dataset(source, settings, people=people, link=link)

        def render(doc: dict[str, Any]) -> None:
            verb = "linked" if doc["mode"] == "link" else "copied"
            stdout.print(f"{verb} {doc['added']} photo(s) to {doc['target']}; {doc['unchanged']} already there")
            for conflict in doc["conflicts"]:
                stdout.print(f"[yellow]left alone[/] {conflict}: a different file has that name")
            for skipped in doc["skipped"]:
                stdout.print(f"[yellow]skipped[/] {skipped['path']}: {skipped['reason']}")
            stdout.print("next: facesearch reindex")

        emit(report.as_dict(), as_json, render)

    run_command(ctx, body)
