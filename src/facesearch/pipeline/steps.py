"""The re-index pipeline as plain functions: version -> validate -> embed -> load -> sweep -> promote.

Prefect flows (``flows/``), the DVC stages (``dvc.yaml``) and the CLI call these; each step does
one thing, opens what it needs (models, Milvus, MLflow) and writes a readable report under
``paths.reports_dir``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from facesearch.errors import FaceSearchError
from facesearch.ingest.dataset import build_manifest
from facesearch.ingest.embed_plan import EmbedPlan, embed_in_process, plan_embedding
from facesearch.ingest.embedcache import EmbedReport, embedding_quality_frames
from facesearch.logging_setup import native_stderr_to_log
from facesearch.models.encoders import ENCODER_DIMS
from facesearch.pipeline.candidates import Candidate, load_candidate
from facesearch.pipeline.promote import Promotion, promote, rollback
from facesearch.pipeline.sweep import SweepResult, choose_for, run_sweep
from facesearch.pipeline.tracking import DatasetRef, SweepRuns, log_sweep
from facesearch.pipeline.validate import ValidationReport, validate_embeddings, validate_manifest
from facesearch.pipeline.versioning import DatasetVersion, version_dataset
from facesearch.settings import Settings
from facesearch.store import FaceStore
from facesearch.store.registry import CollectionRegistry

log = logging.getLogger(__name__)

__all__ = [
    "DatasetVersion",
    "build_manifest",
    "check_embeddings",
    "check_manifest",
    "data_docs_dir",
    "embed_images",
    "load_candidate_step",
    "move_store_if_large",
    "promote_best",
    "rollback_step",
    "serving_is_current",
    "sweep_candidate",
    "version_dataset",
    "write_report",
]


def write_report(settings: Settings, name: str, doc: dict[str, Any], markdown: str | None = None) -> Path:
    """``<reports_dir>/<name>.json`` (+ ``.md``): what DVC tracks as metrics and people read."""
    folder = Path(settings.paths.reports_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    if markdown is not None:
        (folder / f"{name}.md").write_text(markdown)
    return path


def data_docs_dir(settings: Settings) -> Path:
    """Where great-expectations writes its HTML Data Docs: ``<paths.reports_dir>/data_docs``."""
    return Path(settings.paths.reports_dir) / "data_docs"


def check_manifest(manifest: pd.DataFrame, settings: Settings) -> ValidationReport:
    report = validate_manifest(manifest, settings, docs_dir=data_docs_dir(settings))
    write_report(settings, "validation_manifest", report.to_dict(), report.to_markdown())
    return report


def plan_embed(manifest: pd.DataFrame, settings: Settings) -> EmbedPlan:
    """The images the cache does not hold (by sha256 and encoder), cut into shards."""
    return plan_embedding(manifest, settings)


def record_embed(settings: Settings, report: EmbedReport) -> EmbedReport:
    write_report(settings, "embed", report.as_dict())
    return report


def embed_images(manifest: pd.DataFrame, settings: Settings, progress: Any = None) -> EmbedReport:
    """Embed only images the cache does not hold (by sha256 and encoder), in this process."""
    return record_embed(settings, embed_in_process(plan_embedding(manifest, settings), settings, progress))


def check_embeddings(manifest: pd.DataFrame, settings: Settings, encoder_id: str) -> ValidationReport:
    dim = ENCODER_DIMS[encoder_id]
    faces, images = embedding_quality_frames(manifest, settings.paths.embeddings_dir, encoder_id, dim)
    report = validate_embeddings(faces, images, settings, expected_dim=dim, encoder_id=encoder_id, docs_dir=data_docs_dir(settings))
    write_report(settings, "validation_embeddings", report.to_dict(), report.to_markdown())
    return report


@dataclass(frozen=True)
class Freshness:
    current: bool
    collection: str | None
    reason: str


def serving_is_current(settings: Settings, version: DatasetVersion, encoder_id: str) -> Freshness:
    """Is the served collection already built from this dataset version, encoder and settings?"""
    with FaceStore(settings.milvus) as store:
        target = store.alias_target(settings.milvus.alias)
        entry = CollectionRegistry(store).get(target) if target else None
    if entry is None:
        return Freshness(False, target, "no pipeline-built collection is serving")
    same = (entry.dataset_version, entry.encoder, entry.settings_fingerprint) == (version.md5, encoder_id, settings.fingerprint())
    why = "serving collection matches dataset version, encoder and settings" if same else "dataset, encoder or settings changed"
    return Freshness(same, target, why)


def load_candidate_step(manifest: pd.DataFrame, settings: Settings, version: DatasetVersion, encoder_id: str, run_key: str) -> Candidate:
    """Load (or, on a retry with the same ``run_key``, finish loading) this run's candidate."""
    with FaceStore(settings.milvus) as store, native_stderr_to_log():  # faiss k-means warnings: to the log at DEBUG
        return load_candidate(store, settings, manifest, encoder_id, ENCODER_DIMS[encoder_id], version.md5, run_key)


def dataset_path(settings: Settings) -> str:
    """``paths.images_dir`` relative to the project (what data.dvc tracks), else as configured."""
    images, root = Path(settings.paths.images_dir).resolve(), Path(settings.paths.project_dir).resolve()
    return images.relative_to(root).as_posix() if images.is_relative_to(root) else str(settings.paths.images_dir)


def sweep_candidate(settings: Settings, candidate: Candidate, extra_artifacts: list[Path] = ()) -> tuple[SweepResult, SweepRuns]:
    """Run the index sweep and log it to MLflow (one parent, one child per built index)."""
    with FaceStore(settings.milvus) as store, native_stderr_to_log():  # IVF builds: faiss warns on small sets
        result = run_sweep(store, candidate.collection, settings)
    best, reason = choose_for(result, settings)
    tags = {"dataset_version": candidate.dataset_version, "encoder": candidate.encoder, "settings": settings.fingerprint()}
    dataset = DatasetRef(name=dataset_path(settings), md5=candidate.dataset_version, remote=settings.dataset.dvc_remote)
    runs = log_sweep(settings.tracking, result, tags, extra_artifacts, dataset)
    write_report(
        settings,
        "sweep",
        {
            "collection": candidate.collection,
            "n_vectors": result.n_vectors,
            "k": result.k,
            "best_index_type": best.index_type,
            "best_build_params": best.build,
            "best_search_params": best.search,
            "best_nlist": best.nlist,
            "best_nprobe": best.nprobe,
            "best_recall": best.recall,
            "best_p95_ms": best.p95_ms,
            "best_p99_ms": best.p99_ms,
            "best_bytes_per_vector": best.bytes_per_vector,
            "skipped": result.skipped,
            "best_batched_qps": best.batched_qps,
            "trials": len(result.trials),
            "mlflow_run_id": runs.parent_run_id,
        },
    )
    return result, runs


def promote_best(settings: Settings, collection: str, result: SweepResult, runs: SweepRuns) -> Promotion:
    """Choose by the promotion rule, build it on the candidate, move the alias, tag MLflow."""
    from facesearch.pipeline.tracking import record_serving, require_runs, tag_promoted

    best, reason = choose_for(result, settings)
    child = runs.child_for(best)
    if child is None:  # checked before the alias moves: a promotion must never be half-recorded
        raise FaceSearchError(
            f"sweep run {runs.parent_run_id} has no child run for {best.config_key.removeprefix('IVF_FLAT ')} (the sweep stopped before logging it); "
            "nothing was promoted: run the sweep again (facesearch sweep, or facesearch reindex --force)"
        )
    require_runs(settings.tracking, [runs.parent_run_id, child])  # the runs the bookkeeping tags, before the alias moves
    with FaceStore(settings.milvus) as store, native_stderr_to_log():
        promotion = promote(store, settings, collection, best, reason, child)
    tag_promoted(settings.tracking, {"parent": runs.parent_run_id, "child": child}, reason)
    version = record_serving(settings.tracking, collection, runs.parent_run_id, child, best.nlist, best.nprobe)
    promotion = replace(promotion, registered_version=version)
    write_report(settings, "promotion", promotion.as_dict(), promotion.to_markdown())
    return promotion


def rollback_step(settings: Settings) -> Promotion:
    """Point the serving alias back at the previous collection, and ``@serving`` in MLflow with it."""
    from facesearch.pipeline.tracking import serve_recorded_version

    with FaceStore(settings.milvus) as store:
        promotion = rollback(store, settings)
    version = serve_recorded_version(settings.tracking, promotion.collection)
    return replace(promotion, registered_version=version or "")


def summary(**parts: Any) -> dict[str, Any]:
    """JSON-ready summary of a pipeline run."""
    out = {}
    for key, value in parts.items():
        if hasattr(value, "as_dict"):
            out[key] = value.as_dict()
        elif hasattr(value, "__dataclass_fields__"):
            out[key] = asdict(value)
        else:
            out[key] = value
    return out


def move_store_if_large(settings: Settings, collection: str) -> str:
    """After a promotion: a Lite store whose served collection passed ``milvus.auto_server_faces`` moves to the
    local standalone (store/lite_to_server.py). Returns the server's directory, or "" when it stays."""
    from facesearch.store.lite_to_server import maybe_move_to_server

    with FaceStore(settings.milvus) as store:
        moved = maybe_move_to_server(store, collection, settings.milvus)
    return moved.server_dir if moved else ""
