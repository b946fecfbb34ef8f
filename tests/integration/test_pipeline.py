"""The re-index pipeline for real: Prefect flow runs (the session's Prefect server), a DVC repo with a local
remote, great-expectations suites, an MLflow SQLite store and Milvus Lite, all in a temp project."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facesearch.settings import load_settings, parse_overrides
from facesearch.store import FaceStore

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def make_project(tmp_path: Path, samples: Path, people: int = 2, per_person: int = 6) -> Path:
    """A git repo with the project's configs and dvc.yaml, and a small dataset in data/images."""
    project = tmp_path / "project"
    images = project / "data" / "images"
    for person in sorted(p for p in (samples / "johns").iterdir() if p.is_dir())[:people]:
        for photo in sorted(person.glob("*.jpg"))[:per_person]:
            (images / "people" / person.name).mkdir(parents=True, exist_ok=True)
            shutil.copy2(photo, images / "people" / person.name / photo.name)
    (images / "groups").mkdir(parents=True)
    for name in ("sample3.jpg", "sample5.jpg"):
        shutil.copy2(samples / "group_photos" / name, images / "groups" / name)
    shutil.copytree(ROOT / "configs", project / "configs")
    shutil.copy(ROOT / "dvc.yaml", project / "dvc.yaml")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    return project


def overrides_for(project: Path, target: dict[str, str], *extra: str) -> list[str]:
    from tests.conftest import target_overrides

    return [
        *target_overrides(target),
        f"paths.project_dir={project}",
        f"paths.data_dir={project / 'data'}",
        f"paths.images_dir={project / 'data' / 'images'}",
        f"paths.embeddings_dir={project / 'data' / 'embeddings'}",
        f"paths.reports_dir={project / 'data' / 'reports'}",
        f"tracking.mlflow_uri=sqlite:///{project / 'data' / 'mlflow' / 'mlflow.db'}",
        f"tracking.artifact_root={project / 'data' / 'mlflow' / 'artifacts'}",
        f"dataset.dvc_remote={project.parent / 'remote'}",
        "encoder.backend=dlib",
        "sweep.queries=30",
        "sweep.latency_queries=8",
        "sweep.nprobe_grid=[1, 2, 4, 8]",
        *extra,
    ]


def mlflow_runs(project: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'data' / 'mlflow' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("facesearch-index-sweep")
    return client, client.search_runs([exp.experiment_id], max_results=200)


def test_reindex_end_to_end_then_incremental_then_rollback(tmp_path: Path, samples: Path, prefect_harness, milvus_target):
    from flows.reindex import reindex_flow

    project = make_project(tmp_path, samples)
    ov = overrides_for(project, milvus_target)
    settings = load_settings(overrides=parse_overrides(ov))

    first = reindex_flow(overrides=ov)
    assert first["status"] == "promoted"
    assert first["embed"]["images_embedded"] == 14 and first["embed"]["images_reused"] == 0

    # MLflow: one parent run with >= 3 nested child runs carrying recall and latency metrics
    client, runs = mlflow_runs(project)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags and r.data.tags.get("validation") != "failed"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and len(children) >= 3
    for child in children:
        assert {"recall_at_10", "p50_ms", "p95_ms", "batched_qps", "build_s"} <= set(child.data.metrics)
        nlist = int(child.data.params["nlist"])
        history = client.get_metric_history(child.info.run_id, "recall_at_10")
        assert sorted(m.step for m in history) == [p for p in (1, 2, 4, 8) if p <= nlist]  # one point per nprobe
    assert parents[0].data.tags["dataset_version"] == first["dataset_version"]["md5"]
    # the DVC version is each run's MLflow dataset input (the runs table's Dataset column and filter)
    for run in (parents[0], *children):
        inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
        assert len(inputs) == 1 and inputs[0].dataset.source_type == "dvc" and inputs[0].dataset.name == "data/images"
        assert json.loads(inputs[0].dataset.source)["dvc_md5"] == first["dataset_version"]["md5"] + ".dir"
        assert inputs[0].dataset.digest == first["dataset_version"]["md5"]
    experiment = client.get_experiment(parents[0].info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # opens on runs, not the GenAI overview
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"recall_vs_latency.png", "sweep_trials.json"} <= artifacts
    promoted = [r for r in children if r.data.tags.get("promoted") == "true"]
    assert len(promoted) == 1
    # great-expectations' own HTML Data Docs: built by each validation, linked from Prefect, kept with the sweep run
    docs = project / "data" / "reports" / "data_docs"
    index = (docs / "index.html").read_text()
    assert "image_manifest" in index and "embeddings" in index
    assert {p.parts[len(docs.parts) + 1] for p in (docs / "validations").rglob("*.html")} == {"image_manifest", "embeddings"}
    assert "data_docs/index.html" in {a.path for a in client.list_artifacts(parents[0].info.run_id, "data_docs")}
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as prefect:
        # the session's Prefect server holds other tests' runs too: this project's run is the one naming it
        mine = [r.id for r in prefect.read_flow_runs() if f"paths.project_dir={project}" in json.dumps(r.parameters)]
        assert len(mine) == 1
        only_mine = ArtifactFilter(key=ArtifactFilterKey(like_="data-docs"), flow_run_id=ArtifactFilterFlowRunId(any_=mine))
        links = prefect.read_artifacts(artifact_filter=only_mine)
    assert {a.key for a in links} >= {"validation-image-manifest-data-docs", "validation-embeddings-data-docs"}
    assert all(a.type == "markdown" or (docs / "index.html").as_uri() in str(a.data) for a in links)

    # the alias names a collection whose index nlist is the promoted run's nlist
    with FaceStore(settings.milvus) as store:
        target = store.alias_target("face_search")  # describe_collection: describe_alias misreads db_name on Milvus 2.3.5
        assert target == first["promotion"]["collection"]
        assert store.index_info(target).nlist == int(promoted[0].data.params["nlist"]) == first["promotion"]["nlist"]
        assert store.count(target) == first["candidate"]["faces"]
        identities = {r["identity"] for r in store.query(target, 'identity != ""', ["identity"])}
        assert len(identities) == 2
    first_target = target

    # DVC: data.dvc records the version and the local remote holds the files
    dvc_file = (project / "data.dvc").read_text()
    assert first["dataset_version"]["md5"] in dvc_file
    assert any((tmp_path / "remote").rglob("*")), "dvc push sent nothing to the local remote"

    # unchanged data: nothing re-embedded, nothing re-promoted
    second = reindex_flow(overrides=ov)
    assert second["status"] == "unchanged" and second["embed"]["images_embedded"] == 0
    assert second["dataset_version"]["md5"] == first["dataset_version"]["md5"]

    # three new images: exactly three embedded, a new version, a new collection promoted
    new_person = sorted(p for p in (samples / "johns").iterdir() if p.is_dir())[3]
    for photo in sorted(new_person.glob("*.jpg"))[:3]:
        (project / "data" / "images" / "people" / new_person.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(photo, project / "data" / "images" / "people" / new_person.name / photo.name)
    third = reindex_flow(overrides=ov)
    assert third["status"] == "promoted"
    assert third["embed"]["images_embedded"] == 3 and third["embed"]["images_reused"] == 14
    assert third["dataset_version"]["md5"] != first["dataset_version"]["md5"]
    assert third["promotion"]["previous"] == first_target

    # rollback through the CLI moves the alias back
    from typer.testing import CliRunner

    from facesearch.cli import app
    from tests.clihelpers import CliResult  # noqa: F401  (shape of results)

    args = [a for o in ov for a in ("--set", o)]
    rolled = CliRunner().invoke(app, [*args, "promote", "--rollback", "--json"], catch_exceptions=False)
    assert rolled.exit_code == 0, rolled.stderr
    assert json.loads(rolled.stdout)["collection"] == first_target
    with FaceStore(settings.milvus) as store:
        assert store.alias_target("face_search") == first_target

    # the search flow answers through the alias with a table artifact
    from flows.search import search_flow

    query = next((project / "data" / "images" / "people").glob("*/*.jpg"))
    doc = search_flow(image=str(query), k=3, overrides=ov)
    assert doc["faces"][0]["hits"][0]["distance"] < 1e-3


def test_failed_validation_stops_before_the_alias_moves(tmp_path: Path, samples: Path, prefect_harness, milvus_target):
    from facesearch.pipeline.validate import ValidationFailedError
    from flows.reindex import reindex_flow

    project = make_project(tmp_path, samples, people=1, per_person=4)
    ov = overrides_for(project, milvus_target)
    settings = load_settings(overrides=parse_overrides(ov))
    with FaceStore(settings.milvus) as store:  # something already serving
        store.ensure_collection("face_search__previous", 128, settings.index)
        store.point_alias("face_search", "face_search__previous")
    bad = project / "data" / "images" / "bad"
    bad.mkdir()
    for i in range(3):  # 3 corrupt of 9 files: far above validation.max_unreadable_fraction (5%)
        (bad / f"broken_{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValidationFailedError, match="image_manifest"):
        reindex_flow(overrides=ov)
    with FaceStore(settings.milvus) as store:
        assert store.alias_target("face_search") == "face_search__previous"
        assert [c for c in store.list_collections() if c.count("__") >= 3] == []  # no candidate was built
    report = json.loads((project / "data" / "reports" / "validation_manifest.json").read_text())
    assert report["success"] is False
    _, runs = mlflow_runs(project)
    assert any(r.data.tags.get("validation") == "failed" for r in runs)


def test_nan_embeddings_fail_the_embeddings_suite(tmp_path: Path, samples: Path, milvus_target):
    """Corrupt the embedding cache with a NaN vector: the embeddings suite must refuse it."""
    import pyarrow.parquet as pq

    from facesearch.pipeline import steps as pipeline

    project = make_project(tmp_path, samples, people=1, per_person=3)
    settings = load_settings(overrides=parse_overrides(overrides_for(project, milvus_target)))
    manifest = pipeline.build_manifest(settings)
    report = pipeline.embed_images(manifest, settings)
    assert pipeline.check_embeddings(manifest, settings, report.encoder).success
    part = next((project / "data" / "embeddings" / report.encoder / "faces").glob("part-*.parquet"))
    table = pq.read_table(part).to_pandas()
    table.at[0, "embedding"] = np.full(128, np.nan, dtype=np.float32)
    table.to_parquet(part)
    failed = pipeline.check_embeddings(manifest, settings, report.encoder)
    assert not failed.success
    assert any(o.column == "has_nan" for o in failed.failed())


def test_dvc_repro_runs_the_stages_and_leaves_status_clean(tmp_path: Path, samples: Path, milvus_target):
    project = make_project(tmp_path, samples, people=1, per_person=5)
    env_overrides = overrides_for(project, milvus_target)
    settings = load_settings(overrides=parse_overrides(env_overrides))
    from facesearch.pipeline.versioning import version_dataset

    version_dataset(settings)  # data.dvc, DVC repo and remote, as `facesearch reindex` leaves them
    import os

    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.update({f"FACESEARCH__{o.split('=', 1)[0].replace('.', '__').upper()}": o.split("=", 1)[1] for o in env_overrides})
    dvc = [sys.executable, "-m", "dvc"]
    repro = subprocess.run([*dvc, "repro"], cwd=project, env=env, capture_output=True, text=True)
    assert repro.returncode == 0, repro.stderr[-3000:]
    for stage in ("validate", "embed", "sweep"):
        assert f"Running stage '{stage}'" in repro.stdout
    status = subprocess.run([*dvc, "status", "--json"], cwd=project, env=env, capture_output=True, text=True)
    assert status.returncode == 0 and json.loads(status.stdout or "{}") == {}
    metrics = subprocess.run([*dvc, "metrics", "show", "--json"], cwd=project, env=env, capture_output=True, text=True)
    shown = json.loads(metrics.stdout)
    sweep_metrics = next(v for k, v in shown[""]["data"].items() if k.endswith("sweep.json"))["data"]
    assert sweep_metrics["best_recall"] >= 0.9 and sweep_metrics["trials"] >= 3
