"""The ``facesearch`` command line (typer): one module per command group, the app assembled here."""

from facesearch.cli.app import app, main

__all__ = ["app", "main"]
