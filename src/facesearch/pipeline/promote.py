"""Promotion: build the chosen index on a finished candidate, then move the serving alias in one call.

Searchers only ever see the alias, which points at a complete, indexed, loaded collection before
and after the single ``alter_alias``. The previous collection is kept for ``--rollback``; the
``promotion.keep_collections`` newest served collections are kept, older candidates are dropped.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import asdict, dataclass
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
    """Index ``collection`` with the trial's index type and build params (verified), record it, then move the alias."""
    alias = settings.milvus.alias
    current = store.alias_target(alias)
    if current == collection:
        raise FaceSearchError(f"{collection} is already serving behind {alias}; promote a new candidate instead")
    store.rebuild_index(collection, trial.nlist, index_type=trial.index_type, build_params=trial.build)  # the candidate is not served yet: no searcher waits
    registry = CollectionRegistry(store)
    entry = registry.get(collection) or RegistryEntry(collection=collection, encoder=store.encoder_of(collection) or "")
    now = time.time()
    registry.put(
        entry.with_(nlist=trial.nlist, nprobe=trial.nprobe, recall=trial.recall, p95_ms=trial.p95_ms, mlflow_run_id=run_id,
                    previous=current or "", status="serving", promoted_at=now,
                    index_type=trial.index_type, build_params=json.dumps(trial.build), search_params=json.dumps(trial.search))
    )
    store.point_alias(alias, collection)
    if current:
        old = registry.get(current)
        registry.put((old or RegistryEntry(collection=current, encoder=store.encoder_of(current) or "", created_at=now - 1)).with_(status="previous"))
    dropped = apply_retention(store, settings, keep={collection, current or ""})
    log.info("promoted %s (%s, search %s) behind %s; previous %s", collection, trial.config_key, trial.search, alias, current)
    return Promotion(alias, collection, current, trial.nlist, trial.nprobe, trial.recall, trial.p95_ms, reason, dropped,
                     trial.index_type, trial.build, trial.search)


def rollback(store: FaceStore, settings: Settings) -> Promotion:
    """Point the alias back at the collection that served before the current one."""
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
                     f"rollback from {current}", [])


def apply_retention(store: FaceStore, settings: Settings, keep: set[str]) -> list[str]:
    """Drop pipeline candidates beyond the ``keep_collections`` most recently served ones."""
    registry = CollectionRegistry(store)
    served = [e.collection for e in registry.all() if e.promoted_at > 0]
    protected = set(served[: settings.promotion.keep_collections]) | keep
    protected.add(store.alias_target(settings.milvus.alias) or "")
    pattern = re.compile(rf"^{re.escape(settings.milvus.collection_prefix)}__.+__[0-9a-f]{{8}}__\d{{14}}$")
    dropped = []
    for name in store.list_collections():
        if pattern.match(name) and name not in protected:
            entry = registry.get(name)
            if entry and entry.promoted_at == 0 and time.time() - entry.created_at < 3600:
                continue  # a candidate another run may still be sweeping
            store.drop_collection(name)
            registry.remove(name)
            dropped.append(name)
    if dropped:
        log.info("dropped old collections: %s", ", ".join(dropped))
    return dropped
