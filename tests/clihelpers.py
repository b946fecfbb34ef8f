"""Run the real ``facesearch`` CLI in-process (typer's CliRunner) against a temp Milvus Lite store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from facesearch.cli import app


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)


def base_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "--set", f"milvus.uri={tmp_path / 'milvus' / 'faces.db'}",
        "--set", "milvus.retries=0",
        "--set", "encoder.backend=dlib",
        "--set", "index.nlist=16",
        *extra,
    ]


def run_cli(tmp_path: Path, *args: str, settings_args: tuple[str, ...] = ()) -> CliResult:
    result = CliRunner().invoke(app, [*base_args(tmp_path, *settings_args), *args], catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout, result.stderr)
