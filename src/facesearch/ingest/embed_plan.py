"""Which images of the dataset need embedding, as shards, and the report of a finished embedding run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from facesearch.ingest.embedcache import EmbeddingCache, EmbedReport
from facesearch.ingest.shards import Shard, ShardResult, embed_shard, encoder_id_for, plan_shards, steady_images_per_s
from facesearch.models.encoders import ENCODER_DIMS
from facesearch.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedPlan:
    encoder: str
    images_total: int  # unique readable images in the dataset
    images_reused: int  # already in the cache
    shards: list[Shard]


def plan_embedding(manifest: pd.DataFrame, settings: Settings) -> EmbedPlan:
    """The readable images the cache does not hold yet (by sha256, for the configured encoder), in shards."""
    encoder_id = encoder_id_for(settings)
    cache = EmbeddingCache(settings.paths.embeddings_dir, encoder_id, ENCODER_DIMS[encoder_id])
    readable = manifest[manifest["readable"]].drop_duplicates("sha256")
    todo = readable[~readable["sha256"].isin(set(cache.images()["image_sha256"]))]
    shards = plan_shards(todo, settings.compute.shard_images)
    return EmbedPlan(encoder_id, len(readable), len(readable) - len(todo), shards)


def embed_report(plan: EmbedPlan, results: list[ShardResult], workers: str = "in-process") -> EmbedReport:
    embedded = [r for r in results if not r.skipped]
    report = EmbedReport(
        encoder=plan.encoder,
        images_total=plan.images_total,
        images_embedded=sum(r.images for r in embedded),
        images_reused=plan.images_reused,
        faces_new=sum(r.faces for r in embedded),
        images_failed=sum(r.failed for r in embedded),
        shards=len(embedded),
        workers=workers,
        steady_images_per_s=round(rate, 3) if (rate := steady_images_per_s(results)) else None,
        cpu_s_per_image=round(sum(r.cpu_s for r in embedded) / images, 4) if (images := sum(r.images for r in embedded)) else None,
    )
    log.info(
        "embeddings: %d new images (%d faces) in %d shard(s) on %s, %d reused from cache",
        report.images_embedded,
        report.faces_new,
        report.shards,
        workers,
        report.images_reused,
    )
    return report


def embed_in_process(plan: EmbedPlan, settings: Settings, progress: Callable[[int], None] | None = None) -> EmbedReport:
    """Embed the plan's shards one after the other in this process."""
    results = []
    for shard in plan.shards:
        results.append(embed_shard(shard, settings, settings.encoder.num_threads))
        if progress:
            progress(len(shard.paths))
    return embed_report(plan, results)
