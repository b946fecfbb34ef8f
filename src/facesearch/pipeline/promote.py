"""Promotion: build the chosen index on a finished candidate, then move the serving alias in one call.

Searchers only ever see the alias, which points at a complete, indexed, loaded collection before
and after the single ``alter_alias``. The previous collection is kept for ``--rollback``; the
``promotion.keep_collections`` newest served collections are kept, older served ones are dropped,
and so are candidates whose run died (``promotion.abandoned_after_h``); see :func:`apply_retention`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from facesearch.errors import FaceSearchError
from facesearch.pipeline.sweep import Trial
from facesearch.settings import Settings
from facesearch.store import FaceStore
from facesearch.store.registry import CollectionRegistry, RegistryEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Promotion:
    alias: str
    collection: str
    previous: str | None
    nlist: int
    nprobe: int
    recall: float
    p95_ms: float
    reason: str
    dropped: list[str]
    registered_version: str = ""  # the MLflow model version behind <tracking.registered_model>@serving
    index_type: str = "IVF_FLAT"
    build_params: dict[str, int] | None = None
    search_params: dict[str, int] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        return (
            f"## Promoted `{self.collection}`\n\n"
            f"The alias `{self.alias}` now points at `{self.collection}` (before: `{self.previous or 'nothing'}`).\n\n"
            f"| nlist | nprobe | recall@k | p95 ms |\n|---|---|---|---|\n"
            f"| {self.nlist} | {self.nprobe} | {self.recall:.4f} | {self.p95_ms:.2f} |\n\n"
            f"**Why:** {self.reason}.\n\n"
            + (f"Dropped old collections: {', '.join(f'`{d}`' for d in self.dropped)}.\n" if self.dropped else "")
        )


def promote(store: FaceStore, settings: Settings, collection: str, trial: Trial, reason: str, run_id: str = "") -> Promotion:
    """Index ``collection`` with the trial's index type and build params (verified), record it, then move the alias.

    Promotions run one at a time (:func:`promotion_lock`) and read the alias under the lock, so two
    racing promotions chain (the second records the first as its previous). Promoting what already
    serves for the same ``run_id`` is the retry of a half-done promotion: it completes the bookkeeping.
    """
    alias = settings.milvus.alias
    registry = CollectionRegistry(store)
    if store.alias_target(alias) != collection:
        require_promotable(store, registry, collection)
        # the candidate is not served yet: no searcher waits
        store.rebuild_index(collection, trial.nlist, index_type=trial.index_type, build_params=trial.build)
    with promotion_lock(settings):
        current = store.alias_target(alias)  # again, under the lock: another promotion may have moved it
        entry = registry.get(collection) or RegistryEntry(collection=collection, encoder=store.encoder_of(collection) or "")
        if current == collection:
            if entry.status != "serving" or entry.mlflow_run_id != run_id:
                raise FaceSearchError(f"{collection} is already serving behind {alias} (promoted from run {entry.mlflow_run_id or '?'}); "
                                      "promote a new candidate instead")
            log.info("%s already serves behind %s (a retried promotion): completing the bookkeeping", collection, alias)
            current = entry.previous or None
        else:
            registry.put(entry.with_(nlist=trial.nlist, nprobe=trial.nprobe, recall=trial.recall, p95_ms=trial.p95_ms,
                                     mlflow_run_id=run_id, previous=current or "", status="serving", promoted_at=time.time(),
                                     index_type=trial.index_type, build_params=json.dumps(trial.build), search_params=json.dumps(trial.search)))
            store.point_alias(alias, collection)
        if current:
            old = registry.get(current)
            if old is None or old.status == "serving":
                registry.put((old or RegistryEntry(collection=current, encoder=store.encoder_of(current) or "",
                                                   created_at=time.time() - 1)).with_(status="previous"))
        dropped = apply_retention(store, settings, keep={collection, current or ""})
    log.info("promoted %s (%s, search %s) behind %s; previous %s", collection, trial.config_key, trial.search, alias, current)
    return Promotion(alias, collection, current, trial.nlist, trial.nprobe, trial.recall, trial.p95_ms, reason, dropped,
                     index_type=trial.index_type, build_params=trial.build, search_params=trial.search)


def require_promotable(store: FaceStore, registry: CollectionRegistry, collection: str) -> None:
    """A candidate that does not exist or is still loading is refused before anything changes."""
    if not store.has_collection(collection):
        raise FaceSearchError(f"cannot promote {collection}: no such collection (dropped, or the load never ran)")
    entry = registry.get(collection)
    if entry is not None and entry.status == "loading":
        raise FaceSearchError(f"cannot promote {collection}: it is still loading (or its load died); re-run the re-index")


@contextmanager
def promotion_lock(settings: Settings) -> Iterator[None]:
    """One promotion (or rollback) at a time per alias: an exclusive flock under ``paths.data_dir/locks``."""
    folder = Path(settings.paths.data_dir) / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"promote-{settings.milvus.alias}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + settings.promotion.lock_timeout_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise FaceSearchError(f"another promotion of {settings.milvus.alias} held its lock for "
                                          f"{settings.promotion.lock_timeout_s:.0f} s (promotion.lock_timeout_s); nothing was promoted") from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def rollback(store: FaceStore, settings: Settings) -> Promotion:
    """Point the alias back at the collection that served before the current one."""
    with promotion_lock(settings):
        return _rollback(store, settings)


def _rollback(store: FaceStore, settings: Settings) -> Promotion:
    alias = settings.milvus.alias
    current = store.alias_target(alias)
    registry = CollectionRegistry(store)
    entry = registry.get(current) if current else None
    if not entry or not entry.previous:
        raise FaceSearchError(f"nothing to roll back to: {alias} -> {current} has no recorded previous collection")
    if not store.has_collection(entry.previous):
        raise FaceSearchError(f"cannot roll back: previous collection {entry.previous} no longer exists")
    target = registry.get(entry.previous) or RegistryEntry(collection=entry.previous, encoder=entry.encoder)
    store.ensure_loaded(entry.previous)
    store.point_alias(alias, entry.previous)
    now = time.time()
    registry.put(entry.with_(status="retired"))
    registry.put(target.with_(status="serving", promoted_at=now))
    info = store.index_info(entry.previous)
    log.info("rolled back %s: %s -> %s", alias, current, entry.previous)
    return Promotion(alias, entry.previous, current, info.nlist or 0, target.nprobe, target.recall, target.p95_ms,
                     f"rollback from {current}", [], index_type=info.index_type or "IVF_FLAT",
                     build_params=json.loads(target.build_params or "null"), search_params=json.loads(target.search_params or "null"))


def apply_retention(store: FaceStore, settings: Settings, keep: set[str]) -> list[str]:
    """Drop pipeline collections that are finished and old; never one another run may still be building.

    Dropped: collections registered as served before (``previous``/``retired``) beyond the
    ``keep_collections`` most recently served, and candidates left ``loading``/unpromoted for
    ``abandoned_after_h`` (their run died). Unregistered collections are never dropped.
    """
    registry = CollectionRegistry(store)
    entries = registry.all()
    served = [e.collection for e in entries if e.promoted_at > 0]
    protected = set(served[: settings.promotion.keep_collections]) | keep
    protected.add(store.alias_target(settings.milvus.alias) or "")
    abandoned_before = time.time() - settings.promotion.abandoned_after_h * 3600
    dropped = []
    for entry in entries:
        if entry.collection in protected or not entry.dataset_version:  # not built by the pipeline: not ours to drop
            continue
        finished = entry.status in ("previous", "retired") or (entry.status == "serving" and entry.promoted_at > 0)
        abandoned = entry.status in ("loading", "candidate") and entry.created_at < abandoned_before
        if finished or abandoned:
            if store.has_collection(entry.collection):
                store.drop_collection(entry.collection)
            registry.remove(entry.collection)
            dropped.append(entry.collection)
    if dropped:
        log.info("dropped old collections: %s", ", ".join(dropped))
    return dropped
