"""What every command shares: the typer app and its global options, settings loading, error-to-exit-code mapping, JSON or table output, progress bars."""

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

from facesearch.errors import FaceSearchError
from facesearch.logging_setup import configure_logging
from facesearch.settings import Settings, load_settings, parse_overrides

log = logging.getLogger("facesearch.cli")


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


# -- pipeline (also the DVC stages in dvc.yaml) ----------------------------------------------
OutOpt = Annotated[Path | None, typer.Option("--out", help="Also write the JSON document to this file.")]


def _emit_to(doc: dict[str, Any], out: Path | None, as_json: bool) -> None:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    emit(doc, as_json, lambda d: stdout.print_json(data=json.loads(json.dumps(d, default=str))))
