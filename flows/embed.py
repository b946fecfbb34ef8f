"""The embed step fanned out on Dask: one Prefect task per shard, run by prefect-dask's ``DaskTaskRunner``.

``compute.dask_address``: ``local`` starts a ``distributed.LocalCluster`` of ``compute.workers`` processes
for the run; ``tcp://host:8786`` uses an existing cluster (its workers need this package, the same
versions, the images and ``paths.embeddings_dir`` on a shared filesystem, and the Prefect API).
Each worker loads the models once; a shard already in the cache is skipped, and a worker killed mid-shard
has its shard re-run by Dask (parts are written atomically), so a run ends with the rows of a clean run.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from prefect import flow, get_run_logger, task

from facesearch.ingest.embed_plan import EmbedPlan, embed_report
from facesearch.ingest.shards import Shard, ShardResult
from facesearch.ingest.shards import embed_shard as embed_one_shard
from facesearch.pipeline.compute import dask_config, dask_task_runner, require_scheduler
from facesearch.settings import Settings


@task(retries=1, retry_delay_seconds=2, task_run_name="embed-shard-{shard.key}")
def embed_shard(shard: Shard, settings: Settings, threads: int) -> ShardResult:
    return embed_one_shard(shard, settings, threads)


@flow(name="facesearch-embed-shards")
def embed_shards(plan: EmbedPlan, settings: Settings) -> Any:
    logger = get_run_logger()
    try:
        from prefect.context import FlowRunContext

        client = FlowRunContext.get().task_runner.client  # type: ignore[union-attr]  # starts a LocalCluster here
        workers = len(client.scheduler_info().get("workers", {}))
        logger.info("Dask scheduler %s, %d worker(s), dashboard %s", client.scheduler.address, workers, client.dashboard_link or "off")
    except Exception as exc:  # the dashboard address is information only
        logger.debug("no Dask client details: %s", exc)
    futures = [embed_shard.submit(shard, settings, settings.compute.threads_per_worker) for shard in plan.shards]
    return embed_report(plan, [f.result() for f in futures], workers=settings.compute.dask_address)


def worker_api_url() -> str | None:
    """The Prefect API the workers must report to: the configured one, else this process's temporary server.

    The temporary server is started here when this process has none yet (``facesearch index --dask`` runs no
    outer flow): the embed flow then uses it too, instead of every worker starting one of its own (~15 s each).
    """
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_ENABLED, get_current_settings

    url = get_current_settings().api.url
    if url:
        return str(url)
    if not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the one Prefect's own client starts: started once per process
    server.start()
    return server.api_url


def embed_on_dask(plan: EmbedPlan, settings: Settings) -> Any:
    """Run the shards on the configured Dask cluster; an unreachable scheduler fails in seconds."""
    require_scheduler(settings.compute)
    with ExitStack() as stack:
        url = worker_api_url()
        stack.enter_context(dask_config(api_url=url, threads=settings.compute.threads_per_worker))
        if url:
            from prefect.settings import PREFECT_API_URL, temporary_settings

            # without a real URL every worker process would start a temporary Prefect server of its own
            stack.enter_context(temporary_settings(updates={PREFECT_API_URL: url}))
        return embed_shards.with_options(task_runner=dask_task_runner(settings.compute))(plan, settings)
