"""Promotion checks everything it needs before the alias moves (a half-recorded promotion is not possible)."""

from __future__ import annotations

import numpy as np
import pytest

from facesearch.errors import FaceSearchError
from facesearch.pipeline.steps import promote_best
from facesearch.pipeline.sweep import SweepResult, Trial
from facesearch.pipeline.tracking import SweepRuns
from facesearch.store import FaceRecord

pytestmark = pytest.mark.integration


def test_a_sweep_without_its_child_run_promotes_nothing(settings, store):
    serving, candidate = store.collection_name("dlib-resnet-v1", "a"), store.collection_name("dlib-resnet-v1", "b")
    rng = np.random.default_rng(0)
    for name in (serving, candidate):
        store.ensure_collection(name, 128, settings.index)
        vectors = rng.normal(size=(40, 128)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store.upsert(name, [FaceRecord(id=i + 1, image_path=f"/p/{i}.jpg", image_paths=[f"/p/{i}.jpg"], image_sha256=f"{i:064x}",
                                       image_phash=0, face_index=0, bbox=[0, 0, 1, 1], det_prob=0.99, identity="",
                                       encoder="dlib-resnet-v1", embedding=v) for i, v in enumerate(vectors)])
        store.flush(name)
    store.point_alias(settings.milvus.alias, serving)
    result = SweepResult(candidate, 40, 128, 10, 10, [4], [1, 4], [Trial(4, 4, 1.0, 1.0, 1.0, 100.0, 0.1)])
    died = SweepRuns("exp", "parent-run", {})  # the sweep died before it logged its child runs
    with pytest.raises(FaceSearchError, match="no child run for nlist=4"):
        promote_best(settings, candidate, result, died)
    assert store.alias_target(settings.milvus.alias) == serving


def test_promote_refuses_a_sweep_that_died_before_logging_its_children(settings, store, cli, tmp_path):
    from facesearch.pipeline.tracking import client_for, experiment_id

    serving, candidate = store.collection_name("dlib-resnet-v1", "a"), store.collection_name("dlib-resnet-v1", "b")
    for name in (serving, candidate):
        store.ensure_collection(name, 128, settings.index)
    store.point_alias(settings.milvus.alias, serving)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking = settings.tracking.model_copy(update={"mlflow_uri": uri, "artifact_root": tmp_path / "artifacts"})
    client = client_for(tracking)
    parent = client.create_run(experiment_id(client, tracking), run_name=f"sweep {candidate}", tags={"collection": candidate}).info.run_id
    client.set_terminated(parent, status="FAILED")  # killed mid-sweep: no trials artifact, no children tag

    out = cli("promote", "--run-id", parent, settings_args=("--set", f"tracking.mlflow_uri={uri}", "--set", f"tracking.artifact_root={tmp_path / 'artifacts'}"))
    assert out.exit_code != 0
    assert f"sweep run {parent}" in out.stderr and "'children' tag" in out.stderr and "nothing was promoted" in out.stderr
    assert "Traceback" not in out.stderr
    assert store.alias_target(settings.milvus.alias) == serving
