"""MLflow tracking for index sweeps: one parent run per sweep, one nested child run per built index
(index type + build params, e.g. ``IVF_FLAT nlist=128``, ``HNSW M=16 efConstruction=200``), metrics per search param.

Uses ``MlflowClient`` with an explicit tracking URI (default: a SQLite file under ``data/``),
never the fluent global run state, so flows, the CLI and tests cannot step on each other.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facesearch.errors import FaceSearchError
from facesearch.pipeline.sweep import SweepResult, Trial
from facesearch.settings import TrackingSettings

log = logging.getLogger(__name__)

TRIALS_ARTIFACT = "sweep_trials.json"
PLOT_ARTIFACT = "recall_vs_latency.png"


EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")  # MLflow 3 opens it on the runs view, not GenAI


@dataclass(frozen=True)
class DatasetRef:
    """The DVC dataset version a sweep ran on, logged as an MLflow dataset input (the runs table's Dataset column)."""

    name: str  # the tracked folder, e.g. data/images
    md5: str  # DVC's .dir md5 (without the suffix): the dataset version
    remote: str  # where `dvc pull` gets it
    nfiles: int = 0

    def entity(self) -> Any:
        from mlflow.entities import Dataset, DatasetInput, InputTag

        source = json.dumps({"dvc_md5": f"{self.md5}.dir", "path": self.name, "remote": self.remote})
        dataset = Dataset(name=self.name, digest=self.md5, source_type="dvc", source=source,
                          profile=json.dumps({"nfiles": self.nfiles, "md5": self.md5}))
        return DatasetInput(dataset=dataset, tags=[InputTag("mlflow.data.context", "index")])


@dataclass(frozen=True)
class SweepRuns:
    experiment_id: str
    parent_run_id: str
    child_run_ids: dict[Any, str]  # Trial.config_key ("IVF_FLAT nlist=128") -> run id

    def child_for(self, trial: Trial) -> str | None:
        """The child run of the trial's built index (sweeps logged before index types were keyed by nlist)."""
        legacy = (str(trial.nlist), trial.nlist) if trial.index_type == "IVF_FLAT" else ()
        keys: tuple[Any, ...] = (trial.config_key, *legacy)
        return next((self.child_run_ids[k] for k in keys if k in self.child_run_ids), None)


def client_for(settings: TrackingSettings) -> Any:
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = settings.mlflow_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def experiment_id(client: Any, settings: TrackingSettings) -> str:
    existing = client.get_experiment_by_name(settings.experiment)
    if existing is not None:
        if existing.tags.get(EXPERIMENT_KIND[0]) is None:  # experiments made before the tag existed
            client.set_experiment_tag(existing.experiment_id, *EXPERIMENT_KIND)
        return str(existing.experiment_id)
    root = Path(settings.artifact_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return str(client.create_experiment(settings.experiment, artifact_location=root.as_uri(), tags=dict([EXPERIMENT_KIND])))


def _metrics(trial: Trial, k: int) -> dict[str, float]:
    return {f"recall_at_{k}": trial.recall, "p50_ms": trial.p50_ms, "p95_ms": trial.p95_ms, "p99_ms": trial.p99_ms,
            "batched_qps": trial.batched_qps}


def log_sweep(
    settings: TrackingSettings, result: SweepResult, tags: dict[str, str], extra_artifacts: list[Path] = (), dataset: DatasetRef | None = None
) -> SweepRuns:
    """Write the sweep to MLflow: parent (grids, dataset version, plot, trials JSON) and a child per built index."""
    from mlflow.entities import Metric, Param, RunTag

    client = client_for(settings)
    exp = experiment_id(client, settings)
    now = int(time.time() * 1000)
    base_tags = {**tags, "collection": result.collection}
    parent = client.create_run(exp, run_name=f"sweep {result.collection}", tags=base_tags)
    pid = parent.info.run_id
    if dataset is not None:
        client.log_inputs(pid, datasets=[dataset.entity()])
    client.log_batch(
        pid,
        params=[
            Param("n_vectors", str(result.n_vectors)),
            Param("dim", str(result.dim)),
            Param("k", str(result.k)),
            Param("n_queries", str(result.n_queries)),
            Param("nlist_grid", json.dumps(result.nlist_grid)),
            Param("nprobe_grid", json.dumps(result.nprobe_grid)),
            Param("index_types", json.dumps(result.index_types)),
            Param("skipped", json.dumps(result.skipped)[:500]),
            *(Param(key, value) for key, value in tags.items()),
        ],
    )
    children: dict[str, str] = {}
    for key in dict.fromkeys(t.config_key for t in result.trials):
        trials = [t for t in result.trials if t.config_key == key]
        first = trials[0]
        search_key = next(iter(first.search))
        child = client.create_run(exp, run_name=key, tags={**base_tags, "mlflow.parentRunId": pid, "index_type": first.index_type})
        cid = child.info.run_id
        if dataset is not None:
            client.log_inputs(cid, datasets=[dataset.entity()])
        steps = [(t, int(t.search[search_key])) for t in trials]
        metrics = [Metric(name, value, now, step) for t, step in steps for name, value in _metrics(t, result.k).items()]
        metrics += [Metric(f"{name}__{search_key}_{step}", value, now, 0) for t, step in steps for name, value in _metrics(t, result.k).items()]
        metrics += [Metric("build_s", first.build_s, now, 0), Metric("bytes_per_vector", first.bytes_per_vector, now, 0),
                    Metric("index_bytes_per_vector", first.index_bytes_per_vector, now, 0)]
        params = [Param("index_type", first.index_type), Param(f"{search_key}s", json.dumps([step for _, step in steps]))]
        params += [Param(name, str(value)) for name, value in first.build.items()]
        client.log_batch(cid, metrics=metrics, params=params)
        client.set_terminated(cid)
        children[key] = cid
    with tempfile.TemporaryDirectory() as tmp:
        trials_file = Path(tmp) / TRIALS_ARTIFACT
        trials_file.write_text(json.dumps(result.as_dict(), indent=2))
        client.log_artifact(pid, str(trials_file))
        plot = Path(tmp) / PLOT_ARTIFACT
        plot_sweep(result, plot)
        client.log_artifact(pid, str(plot))
    for path in extra_artifacts:
        client.log_artifact(pid, str(path))
    client.log_batch(pid, tags=[RunTag("children", json.dumps(children))])
    client.set_terminated(pid)
    log.info("MLflow: sweep run %s with %d child runs in experiment %s", pid, len(children), settings.experiment)
    return SweepRuns(exp, pid, children)


def plot_sweep(result: SweepResult, path: Path) -> Path:
    """Recall@k against p95 latency, one line per built index (the search param grows along each line)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for key in dict.fromkeys(t.config_key for t in result.trials):
        trials = sorted((t for t in result.trials if t.config_key == key), key=lambda t: next(iter(t.search.values())))
        ax.plot([t.p95_ms for t in trials], [t.recall for t in trials], marker="o", label=key)
        for t in trials:
            ax.annotate(str(next(iter(t.search.values()))), (t.p95_ms, t.recall), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("p95 single-query latency (ms)")
    ax.set_ylabel(f"recall@{result.k} vs exact search")
    ax.set_title(f"{', '.join(result.index_types)} sweep on {result.n_vectors} vectors (labels: nprobe / ef / search_list)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def load_sweep(settings: TrackingSettings, run_id: str) -> SweepResult:
    client = client_for(settings)
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, TRIALS_ARTIFACT, tmp)
        return SweepResult.from_dict(json.loads(Path(local).read_text()))


def sweep_for_promotion(settings: TrackingSettings, parent: str) -> tuple[SweepResult, SweepRuns]:
    """The finished sweep behind ``parent`` (trials and child runs), or a clear error naming what is missing."""
    from mlflow.exceptions import MlflowException

    client = client_for(settings)
    try:
        run = client.get_run(parent)
    except MlflowException as exc:
        raise FaceSearchError(f"no MLflow run {parent} in {settings.mlflow_uri}: {str(exc).splitlines()[0]}") from exc
    died = f"sweep run {parent} (status {run.info.status}) has no {{what}}: the sweep died before it finished logging; nothing was promoted"
    if "children" not in run.data.tags:
        raise FaceSearchError(died.format(what="'children' tag (its child runs per built index)"))
    try:
        result = load_sweep(settings, parent)
    except (MlflowException, OSError, ValueError, KeyError) as exc:
        raise FaceSearchError(died.format(what=f"readable {TRIALS_ARTIFACT} artifact ({str(exc).splitlines()[0]})")) from exc
    children = dict(json.loads(run.data.tags["children"]))  # Trial.config_key -> run id (older sweeps: nlist)
    return result, SweepRuns(run.info.experiment_id, parent, children)


def require_runs(settings: TrackingSettings, run_ids: list[str]) -> None:
    """Every run promotion will tag exists (checked before the alias moves)."""
    from mlflow.exceptions import MlflowException

    client = client_for(settings)
    for run_id in run_ids:
        try:
            client.get_run(run_id)
        except MlflowException as exc:
            raise FaceSearchError(f"MLflow run {run_id} is missing from {settings.mlflow_uri}; nothing was promoted") from exc


def latest_sweep_run(settings: TrackingSettings, collection: str | None = None) -> str | None:
    """The newest parent sweep run (optionally for one collection)."""
    client = client_for(settings)
    exp = client.get_experiment_by_name(settings.experiment)
    if exp is None:
        return None
    query = f"tags.collection = '{collection}'" if collection else ""
    runs = client.search_runs([exp.experiment_id], filter_string=query, order_by=["attributes.start_time DESC"], max_results=50)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    return parents[0].info.run_id if parents else None


def tag_promoted(settings: TrackingSettings, runs: dict[str, str], reason: str) -> None:
    client = client_for(settings)
    for run_id in runs.values():
        client.set_tag(run_id, "promoted", "true")
        client.set_tag(run_id, "promotion_reason", reason)


SERVING_ALIAS = "serving"


def record_serving(settings: TrackingSettings, collection: str, parent_run_id: str, child_run_id: str, nlist: int, nprobe: int) -> str:
    """Point ``<registered_model>@serving`` at a model version for this promotion (made once: retries reuse it).

    The version's source is the sweep run's trials artifact and its run is the sweep run, so the
    MLflow UI answers "what serves now?" and links to the sweep that chose it.
    """
    from mlflow.exceptions import MlflowException

    client = client_for(settings)
    name = settings.registered_model
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="The IVF configuration and collection behind FaceSearch's serving alias")
    mine = [v for v in client.search_model_versions(f"name='{name}' and run_id='{parent_run_id}'") if v.tags.get("collection") == collection]
    version = mine[0] if mine else client.create_model_version(
        name, source=f"runs:/{parent_run_id}/{TRIALS_ARTIFACT}", run_id=parent_run_id,
        tags={"collection": collection, "child_run_id": child_run_id, "nlist": str(nlist), "nprobe": str(nprobe)},
        description=f"{collection}: IVF_FLAT nlist={nlist}, nprobe={nprobe}",
    )
    client.set_registered_model_alias(name, SERVING_ALIAS, version.version)
    log.info("MLflow: %s@%s -> version %s (%s)", name, SERVING_ALIAS, version.version, collection)
    return str(version.version)


def serve_recorded_version(settings: TrackingSettings, collection: str) -> str | None:
    """After a rollback: move ``@serving`` to the newest version recorded for ``collection`` (None if there is none)."""
    client = client_for(settings)
    name = settings.registered_model
    versions = sorted(client.search_model_versions(f"name='{name}' and tags.collection='{collection}'"), key=lambda v: int(v.version))
    if not versions:
        log.warning("MLflow: no %s version records %s; %s@%s left as it was", name, collection, name, SERVING_ALIAS)
        return None
    client.set_registered_model_alias(name, SERVING_ALIAS, versions[-1].version)
    log.info("MLflow: %s@%s -> version %s (%s, rollback)", name, SERVING_ALIAS, versions[-1].version, collection)
    return str(versions[-1].version)


def log_failed_validation(settings: TrackingSettings, report: Any, tags: dict[str, str]) -> str:
    """File a failed validation suite in MLflow (JSON + markdown report) so it is seen next to the sweeps."""
    client = client_for(settings)
    exp = experiment_id(client, settings)
    run = client.create_run(exp, run_name=f"validation failed: {report.suite}", tags={**tags, "validation": "failed", "suite": report.suite})
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in ((f"{report.suite}.json", json.dumps(report.to_dict(), indent=2, default=str)), (f"{report.suite}.md", report.to_markdown())):
            path = Path(tmp) / name
            path.write_text(text)
            client.log_artifact(run.info.run_id, str(path))
    if getattr(report, "data_docs", ""):  # GX's HTML Data Docs folder, as data_docs/
        client.log_artifact(run.info.run_id, str(Path(report.data_docs).parent))
    client.set_terminated(run.info.run_id, status="FAILED")
    return str(run.info.run_id)
