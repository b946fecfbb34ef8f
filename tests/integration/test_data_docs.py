"""great-expectations' own HTML Data Docs: built by each validation, filed in MLflow with the run that reports it."""

from __future__ import annotations

from pathlib import Path

import pytest

from facesearch.pipeline.tracking import client_for, log_failed_validation
from facesearch.pipeline.validate import validate_manifest
from facesearch.settings import load_settings
from tests.unit.test_validate import clean_manifest, image_row, manifest, unreadable_row

pytestmark = pytest.mark.integration


def test_each_validation_builds_data_docs_and_a_failed_one_files_them_in_mlflow(tmp_path: Path):
    docs = tmp_path / "reports" / "data_docs"
    settings = load_settings(overrides={"tracking": {"mlflow_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "artifact_root": str(tmp_path / "art")}})

    passed = validate_manifest(clean_manifest(), settings, docs_dir=docs)
    assert passed.success and passed.data_docs == str(docs / "index.html")
    pages = list((docs / "validations" / "image_manifest").rglob("*.html"))
    assert pages, "no validation page rendered"
    assert "image_manifest" in (docs / "index.html").read_text()

    broken = manifest([image_row(0), *(unreadable_row(i) for i in range(1, 10))])
    failed = validate_manifest(broken, settings, docs_dir=docs)
    assert not failed.success
    assert len(list((docs / "validations" / "image_manifest").rglob("*.html"))) > len(pages)  # this run's page too
    run_id = log_failed_validation(settings.tracking, failed, {"dataset_version": "test"})
    client = client_for(settings.tracking)
    assert "data_docs/index.html" in {a.path for a in client.list_artifacts(run_id, "data_docs")}
    local = Path(client.download_artifacts(run_id, "data_docs/index.html", str(tmp_path / "dl")))
    assert "image_manifest" in local.read_text()

    quiet = validate_manifest(clean_manifest(), settings)  # without docs_dir (unit tests, the CLI's validate --json): none
    assert quiet.data_docs == ""
