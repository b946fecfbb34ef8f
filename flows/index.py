"""``facesearch index --dask``: a folder's new photos embedded in shards on Dask, their rows written by this process.

The shards run exactly as the re-index flow's embed step (:func:`flows.embed.embed_on_dask`: one Prefect
task per shard on prefect-dask's ``DaskTaskRunner``); the rest is the in-process path's own code
(:mod:`facesearch.ingest.sharded_index`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from facesearch.ingest.embedcache import EmbedReport
from facesearch.ingest.indexer import IndexJob, IndexReport, ProgressFn
from facesearch.ingest.sharded_index import index_sharded
from facesearch.pipeline.compute import require_scheduler
from facesearch.settings import Settings
from facesearch.store import FaceStore
from flows.common import quiet_task_logs
from flows.embed import embed_on_dask

log = logging.getLogger(__name__)


def index_on_dask(
    jobs: Sequence[IndexJob],
    settings: Settings,
    store: FaceStore,
    encoder_id: str,
    collection: str,
    *,
    force: bool = False,
    progress: ProgressFn | None = None,
    report: IndexReport | None = None,
) -> tuple[IndexReport, EmbedReport | None]:
    """Index ``jobs`` with their embedding fanned out on ``compute.dask_address``; an unreachable scheduler fails in seconds."""
    require_scheduler(settings.compute)
    quiet_task_logs()
    report, embedded = index_sharded(jobs, settings, store, encoder_id, collection, embed_on_dask, force=force, progress=progress, report=report)
    if embedded is None:
        log.info("every new image's embedding was in the cache: nothing ran on Dask")
    return report, embedded
