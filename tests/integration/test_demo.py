"""``facesearch demo`` end to end, with ``--set`` overrides that the re-index flow must honour too."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.single_session]

ROOT = Path(__file__).resolve().parents[2]


def test_demo_builds_and_reads_the_store_it_was_given(tmp_path: Path, samples: Path, monkeypatch: pytest.MonkeyPatch, capfd, prefect_harness):
    """The flow writes the store named by --set and the demo reads that one (it once read the default).

    Its flow run reports to the session's Prefect server (``prefect_harness``): the temporary server a
    first run starts is tested in test_busy_machine.py.
    """
    import shutil
    import subprocess

    from typer.testing import CliRunner

    from facesearch.cli import app
    from facesearch.settings import load_settings, parse_overrides
    from facesearch.store import FaceStore

    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(ROOT / "configs", project / "configs")
    shutil.copy(ROOT / "dvc.yaml", project / "dvc.yaml")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    monkeypatch.chdir(project)
    sets = [f"milvus.uri={tmp_path / 'elsewhere' / 'demo.db'}", f"dataset.dvc_remote={tmp_path / 'remote'}",
            "sweep.queries=30", "sweep.latency_queries=8"]
    result = CliRunner().invoke(app, [*[a for s in sets for a in ("--set", s)], "demo", "--samples", str(samples)])
    assert result.exit_code == 0, result.output
    assert "5/5 held-out photos identified correctly" in result.stdout
    # third-party noise stays off the terminal (issue 12.6): faiss's C++ k-means warnings, MLflow's table set-up
    terminal = capfd.readouterr().err + result.stderr
    assert "WARNING clustering" not in terminal and "Creating initial MLflow database tables" not in terminal
    assert "Traceback" not in terminal
    assert not (project / "data" / "milvus").exists()  # nothing went to the default store
    settings = load_settings(overrides=parse_overrides(sets))
    with FaceStore(settings.milvus) as store:
        target = store.alias_target(settings.milvus.alias)
        assert target is not None and store.count(target) >= 100
        from facesearch.store.people_store import PeopleStore

        named = {p.name for p in PeopleStore(store).persons(store.encoder_of(target) or "").values()}
        assert {d.name for d in (samples / "johns").iterdir() if d.is_dir()} <= named, "the demo's people are not named by the enrolled johns"
