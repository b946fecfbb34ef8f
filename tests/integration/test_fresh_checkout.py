"""A new user's first steps on a fresh checkout: no photos yet, then `dataset add`, then `reindex`, then a clone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facesearch.cli import app

pytestmark = [pytest.mark.integration, pytest.mark.single_session]

ROOT = Path(__file__).resolve().parents[2]


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=cwd, check=True, capture_output=True)


def test_fresh_checkout_no_photos_then_dataset_add_then_reindex_then_clone(tmp_path: Path, johns: Path, prefect_harness, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(ROOT / "configs", project / "configs")
    shutil.copy(ROOT / "dvc.yaml", project / "dvc.yaml")
    git("init", "-q", cwd=project)
    monkeypatch.chdir(project)
    sets = [f"milvus.uri={tmp_path / 'milvus' / 'faces.db'}", f"dataset.dvc_remote={tmp_path / 'remote'}",
            "encoder.backend=sface", "sweep.queries=30", "sweep.latency_queries=8"]
    args = [a for s in sets for a in ("--set", s)]
    runner = CliRunner()

    empty = runner.invoke(app, [*args, "reindex"])
    assert empty.exit_code == 2
    lines = [line for line in empty.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "data/images" in lines[0] and "facesearch dataset add" in lines[0], empty.stderr

    some = sorted(p for p in johns.iterdir() if p.is_dir())[:2]
    source = tmp_path / "my-people"
    for person in some:
        shutil.copytree(person, source / person.name)
    added = runner.invoke(app, [*args, "dataset", "add", str(source), "--people", "--json"])
    assert added.exit_code == 0, added.stderr
    assert json.loads(added.stdout)["added"] == 22 and json.loads(added.stdout)["mode"] == "copy"
    again = json.loads(runner.invoke(app, [*args, "dataset", "add", str(source), "--people", "--json"]).stdout)
    assert (again["added"], again["unchanged"]) == (0, 22)  # adding twice changes nothing
    assert sorted(p.name for p in (project / "data" / "images" / "people").iterdir()) == [p.name for p in some]

    done = runner.invoke(app, [*args, "reindex", "--json"])
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "promoted"
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "data.dvc"], cwd=project, capture_output=True, text=True)
    assert status.returncode == 0 and "up to date" in status.stdout.lower(), status.stdout + status.stderr

    git("add", "data.dvc", ".dvc/config", cwd=project)
    git("commit", "-q", "-m", "dataset", cwd=project)
    clone = tmp_path / "clone"
    git("clone", "-q", str(project), str(clone), cwd=tmp_path)
    pulled = subprocess.run([sys.executable, "-m", "dvc", "pull"], cwd=clone, capture_output=True, text=True)
    assert pulled.returncode == 0, pulled.stderr
    restored = sorted(p.relative_to(clone / "data" / "images") for p in (clone / "data" / "images").rglob("*.jpg"))
    original = sorted(p.relative_to(project / "data" / "images") for p in (project / "data" / "images").rglob("*.jpg"))
    assert restored == original and len(restored) == 22
