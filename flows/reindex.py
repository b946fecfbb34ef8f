"""Re-index flow: version (DVC) -> validate (GX) -> embed (incremental) -> validate -> load -> sweep (MLflow) -> promote.

A failing validation suite fails the flow before anything changes behind the serving alias; its
report is saved as a Prefect artifact and an MLflow run artifact. Retries sit only on the
Milvus/MLflow I/O steps. Run it: ``facesearch reindex`` or ``python -m flows.reindex``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from facesearch.pipeline import steps as pipeline
from facesearch.settings import Settings
from flows.common import flow_settings
from flows.embed import embed_on_dask

IO_RETRIES = {"retries": 2, "retry_delay_seconds": [2, 10]}


def one_retry_layer(settings: Settings) -> Settings:
    """Inside a task Prefect retries, Milvus calls are not retried again by FaceStore (retries would multiply)."""
    return settings.model_copy(update={"milvus": settings.milvus.model_copy(update={"retries": 0})})


@task
def version_dataset(settings: Settings) -> pipeline.DatasetVersion:
    return pipeline.version_dataset(settings)


@task
def build_manifest(settings: Settings) -> pd.DataFrame:
    return pipeline.build_manifest(settings)


@task
def gate(report: Any, settings: Settings, version: pipeline.DatasetVersion) -> None:
    """Publish a validation report; on failure also file it in MLflow, then stop the flow."""
    key = f"validation-{report.suite.replace('_', '-')}"
    create_markdown_artifact(key=key, markdown=report.to_markdown(), description=f"great-expectations {report.suite} suite, dataset {version.short}")
    if report.data_docs:  # GX's own HTML report of the same run
        create_link_artifact(key=f"{key}-data-docs", link=Path(report.data_docs).as_uri(), link_text=f"great-expectations Data Docs ({report.suite})",
                             description=f"GX Data Docs, dataset {version.short}")
    if not report.success:
        from facesearch.pipeline.tracking import log_failed_validation

        log_failed_validation(settings.tracking, report, {"dataset_version": version.md5})
        from facesearch.pipeline.validate import require

        require(report)


@task
def validate_manifest(manifest: pd.DataFrame, settings: Settings) -> Any:
    return pipeline.check_manifest(manifest, settings)


@task
def embed_images(manifest: pd.DataFrame, settings: Settings) -> Any:
    return pipeline.embed_images(manifest, settings)


@task
def plan_embed(manifest: pd.DataFrame, settings: Settings) -> Any:
    return pipeline.plan_embed(manifest, settings)


@task
def record_embed(settings: Settings, report: Any) -> Any:
    return pipeline.record_embed(settings, report)


@task
def validate_embeddings(manifest: pd.DataFrame, settings: Settings, encoder_id: str) -> Any:
    return pipeline.check_embeddings(manifest, settings, encoder_id)


@task(**IO_RETRIES)
def serving_is_current(settings: Settings, version: pipeline.DatasetVersion, encoder_id: str) -> Any:
    return pipeline.serving_is_current(one_retry_layer(settings), version, encoder_id)


@task(**IO_RETRIES)
def load_candidate(manifest: pd.DataFrame, settings: Settings, version: pipeline.DatasetVersion, encoder_id: str) -> Any:
    from prefect.runtime import flow_run

    # named after the flow run, not the clock: a retry (task or flow) resumes the same collection
    return pipeline.load_candidate_step(manifest, one_retry_layer(settings), version, encoder_id, run_key=str(flow_run.id))


@task
def sweep(settings: Settings, candidate: Any) -> Any:
    docs = pipeline.data_docs_dir(settings)  # the validations' GX Data Docs go with the sweep run, as data_docs/
    result, runs = pipeline.sweep_candidate(settings, candidate, [docs] if docs.is_dir() else [])
    create_table_artifact(key="index-sweep", table=[t.__dict__ for t in result.trials],
                          description=f"IVF_FLAT sweep on {candidate.collection} ({result.n_vectors} vectors), MLflow run {runs.parent_run_id}")
    return result, runs


@task(**IO_RETRIES)
def promote(settings: Settings, collection: str, result: Any, runs: Any) -> Any:
    promotion = pipeline.promote_best(one_retry_layer(settings), collection, result, runs)  # a retry completes a half-done one
    create_markdown_artifact(key="promotion", markdown=promotion.to_markdown(), description=f"promoted {collection}")
    return promotion


@task
def move_store_if_large(settings: Settings, collection: str) -> str:
    return pipeline.move_store_if_large(settings, collection)


@flow(name="facesearch-reindex")
def reindex_flow(config: list[str] | None = None, overrides: list[str] | None = None, force: bool = False) -> dict[str, Any]:
    logger = get_run_logger()
    settings = flow_settings(config, overrides)
    version = version_dataset(settings)
    manifest = build_manifest(settings)
    gate(validate_manifest(manifest, settings), settings, version)
    if settings.compute.dask_address:  # one task per shard on a Dask cluster (flows/embed.py)
        embedded = record_embed(settings, embed_on_dask(plan_embed(manifest, settings), settings))
    else:
        embedded = embed_images(manifest, settings)
    gate(validate_embeddings(manifest, settings, embedded.encoder), settings, version)
    fresh = serving_is_current(settings, version, embedded.encoder)
    if fresh.current and not force:
        logger.info("nothing to do: %s (%s)", fresh.reason, fresh.collection)
        return pipeline.summary(status="unchanged", dataset_version=version, embed=embedded, serving=fresh.collection)
    candidate = load_candidate(manifest, settings, version, embedded.encoder)
    result, runs = sweep(settings, candidate)
    promotion = promote(settings, candidate.collection, result, runs)
    logger.info("promoted %s: nlist=%d nprobe=%d (%s)", promotion.collection, promotion.nlist, promotion.nprobe, promotion.reason)
    if moved_to := move_store_if_large(settings, promotion.collection):
        logger.info("the store passed milvus.auto_server_faces: it now lives in the local Milvus standalone in %s", moved_to)
    return pipeline.summary(status="promoted", dataset_version=version, embed=embedded, candidate=candidate,
                            sweep_run_id=runs.parent_run_id, promotion=promotion)


if __name__ == "__main__":
    import json

    print(json.dumps(reindex_flow(), default=str, indent=2))  # noqa: T201 - script entry point prints its result
