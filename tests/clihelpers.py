"""Run the real ``facesearch`` CLI in-process (typer's CliRunner) against a temp Milvus Lite store."""

from __future__ import annotations

import json
from dataclasses import dataclass
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


def base_args(target: dict[str, str], *extra: str) -> list[str]:
    from tests.conftest import target_overrides

    sets = [*target_overrides(target), "encoder.backend=dlib", "index.nlist=16"]
    return [*(a for s in sets for a in ("--set", s)), *extra]


class Cli:
    """``cli("index", path, "--json")``: the real CLI against one test's Milvus."""

    def __init__(self, target: dict[str, str]) -> None:
        self.target = target

    def __call__(self, *args: str, settings_args: tuple[str, ...] = ()) -> CliResult:
        result = CliRunner().invoke(app, [*base_args(self.target, *settings_args), *args], catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)
