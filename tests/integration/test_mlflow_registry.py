"""What serves now, answered in MLflow too: the registered model's @serving alias follows promotion and rollback."""

from __future__ import annotations

from pathlib import Path

import pytest

from facesearch.pipeline.steps import promote_best, rollback_step
from facesearch.pipeline.sweep import SweepResult, Trial
from facesearch.pipeline.tracking import SERVING_ALIAS, client_for, log_sweep
from tests.integration.test_promotion_safety import registered

pytestmark = pytest.mark.integration


def test_serving_alias_in_the_model_registry_follows_promotion_and_rollback(settings, store):
    data = Path(settings.paths.data_dir)
    tracking = settings.tracking.model_copy(update={"mlflow_uri": f"sqlite:///{data / 'mlflow.db'}", "artifact_root": data / "artifacts"})
    settings = settings.model_copy(update={"tracking": tracking})
    client = client_for(tracking)
    name = tracking.registered_model
    first, second = registered(store, settings, "aaaaaaaa__00000001", seed=1), registered(store, settings, "bbbbbbbb__00000002", seed=2)
    sweeps = {}
    for collection, nlist, nprobe in ((first, 4, 2), (second, 8, 4)):
        result = SweepResult(collection, 40, 128, 10, 10, [nlist], [nprobe], [Trial(nlist, nprobe, 1.0, 1.0, 1.0, 100.0, 0.1)])
        runs = log_sweep(tracking, result, {"dataset_version": "d" * 32})
        promotion = promote_best(settings, collection, result, runs)
        sweeps[collection] = runs
        serving = client.get_model_version_by_alias(name, SERVING_ALIAS)
        assert str(serving.version) == promotion.registered_version
        assert (serving.run_id, serving.tags["collection"]) == (runs.parent_run_id, collection)
        assert (serving.tags["nlist"], serving.tags["nprobe"]) == (str(nlist), str(nprobe))
        assert serving.tags["child_run_id"] == runs.child_for(result.trials[0])

    promote_best(settings, second, result, sweeps[second])  # a retried promotion reuses its version
    assert len(client.search_model_versions(f"name='{name}'")) == 2

    back = rollback_step(settings)
    assert store.alias_target(settings.milvus.alias) == first == back.collection
    serving = client.get_model_version_by_alias(name, SERVING_ALIAS)
    assert (serving.run_id, serving.tags["collection"], back.registered_version) == (sweeps[first].parent_run_id, first, str(serving.version))
