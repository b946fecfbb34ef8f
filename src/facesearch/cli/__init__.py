"""``facesearch`` command line (typer). Progress and logs go to stderr; ``--json`` puts one JSON document on stdout.

Exit codes: 0 ok, 2 bad input (unreadable image, no face in the query, bad config), 1 anything else.
One module per command group registers its commands on the shared app (``cli.common.app``); it is assembled here.
"""

from __future__ import annotations

from facesearch.cli import ingest, lean_exit, pipeline, plan, query  # noqa: F401  (importing registers their commands, in help order)
from facesearch.cli.common import app
from facesearch.cli.dataset import dataset_app
from facesearch.cli.people import people_app
from facesearch.cli.store import store_app

app.add_typer(dataset_app, name="dataset")
app.add_typer(store_app, name="store")
app.add_typer(people_app, name="people")

__all__ = ["app", "main"]


def main() -> None:
    """The ``facesearch`` command. A read-only command that asked for it ends without the interpreter's teardown."""
    try:
        app()
    except SystemExit as exc:  # typer ends every run with sys.exit
        if lean_exit.requested():
            lean_exit.finish(exc.code)
        raise


if __name__ == "__main__":
    main()
