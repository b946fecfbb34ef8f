"""What each collection is, kept in Milvus itself (collection ``<prefix>_registry``).

Milvus Lite has no collection descriptions, and a file beside one client would not be seen by
another host, so the facts searchers and promotion need (encoder, dataset version, the promoted
nlist/nprobe, which collection served before) live in a small Milvus collection next to the faces.
Milvus requires a vector field in every collection: ``_unused`` is a 2-d zero vector. Every call
goes through the store (:meth:`FaceStore.call`, its query methods): retries, and errors as StoreError.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, fields
from typing import Any

from facesearch.settings import Settings
from facesearch.store.face_store import FaceStore
from facesearch.store.records import quote

log = logging.getLogger(__name__)

_WARNED: set[str] = set()  # registries whose missing fields were reported (once per process)

STATUSES = ("loading", "candidate", "serving", "previous", "retired")  # loading: registered before its rows


@dataclass(frozen=True)
class RegistryEntry:
    collection: str
    encoder: str
    dataset_version: str = ""
    settings_fingerprint: str = ""
    nlist: int = 0
    nprobe: int = 0
    recall: float = 0.0
    p95_ms: float = 0.0
    mlflow_run_id: str = ""
    previous: str = ""  # the collection the alias pointed at before this one was promoted
    status: str = "candidate"
    created_at: float = 0.0
    promoted_at: float = 0.0
    index_type: str = ""  # the promoted index (empty: IVF_FLAT with nlist/nprobe, as before)
    build_params: str = ""  # JSON, e.g. {"M": 16, "efConstruction": 200}
    search_params: str = ""  # JSON, e.g. {"ef": 64}: what searchers pass to store.search

    def with_(self, **changes: Any) -> RegistryEntry:
        return RegistryEntry(**{**asdict(self), **changes})


class CollectionRegistry:
    def __init__(self, store: FaceStore) -> None:
        self.store = store
        self.name = f"{store.settings.collection_prefix}_registry"
        self._ready = False
        self._missing: set[str] = set()

    def _ensure(self) -> None:
        if self._ready:
            return
        self.store.call("registry create", self._create)
        self.store.ensure_loaded(self.name)
        self._ready = True

    def _create(self) -> None:
        client = self.store.client
        if not client.has_collection(self.name):
            from pymilvus import DataType, MilvusClient

            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("collection", DataType.VARCHAR, is_primary=True, max_length=255)
            for f in fields(RegistryEntry):
                if f.name == "collection":
                    continue
                if f.type == "str":
                    schema.add_field(f.name, DataType.VARCHAR, max_length=255)
                elif f.type == "int":
                    schema.add_field(f.name, DataType.INT64)
                else:
                    schema.add_field(f.name, DataType.DOUBLE)
            schema.add_field("_unused", DataType.FLOAT_VECTOR, dim=2)
            index = client.prepare_index_params()
            index.add_index(field_name="_unused", index_type="FLAT", metric_type="L2")
            client.create_collection(self.name, schema=schema, index_params=index, consistency_level="Strong")
        else:  # a registry made before a field existed: Milvus cannot add fields, so those are not stored
            known = {f["name"] for f in client.describe_collection(self.name)["fields"]}
            self._missing = {f.name for f in fields(RegistryEntry)} - known
            if self._missing and self.name not in _WARNED:
                _WARNED.add(self.name)
                log.warning("registry %s predates fields %s: they are not recorded", self.name, sorted(self._missing))

    def put(self, entry: RegistryEntry) -> RegistryEntry:
        self._ensure()
        row = {k: v for k, v in asdict(entry).items() if k not in self._missing} | {"_unused": [0.0, 0.0]}
        if not row["created_at"]:
            row["created_at"] = time.time()
        self.store.call("registry upsert", lambda: self.store.client.upsert(self.name, [row]))
        return RegistryEntry(**{k: v for k, v in row.items() if k != "_unused"})

    def get(self, collection: str) -> RegistryEntry | None:
        self._ensure()
        rows = self.store.query(self.name, f"collection == {quote(collection)}", ["*"])
        return _entry(rows[0]) if rows else None

    def all(self) -> list[RegistryEntry]:
        """Every entry, newest first."""
        self._ensure()
        rows = self.store.query(self.name, 'collection != ""', ["*"])
        return sorted((_entry(r) for r in rows), key=lambda e: (e.promoted_at, e.created_at), reverse=True)

    def remove(self, collection: str) -> None:
        self._ensure()
        self.store.call("registry delete", lambda: self.store.client.delete(self.name, filter=f"collection == {quote(collection)}"))


def _entry(row: dict[str, Any]) -> RegistryEntry:
    return RegistryEntry(**{f.name: row[f.name] for f in fields(RegistryEntry) if f.name in row})


def serving_nprobe(store: FaceStore, settings: Settings, collection: str) -> int:
    """The nprobe promotion chose for this collection, else ``index.nprobe``."""
    entry = CollectionRegistry(store).get(collection) if store.has_collection(f"{settings.milvus.collection_prefix}_registry") else None
    return entry.nprobe if entry and entry.nprobe else settings.index.nprobe


def serving_search_params(store: FaceStore, settings: Settings, collection: str) -> dict[str, int]:
    """The search params promotion chose (``{"ef": 64}`` for HNSW), else ``{"nprobe": serving_nprobe}``."""
    entry = CollectionRegistry(store).get(collection) if store.has_collection(f"{settings.milvus.collection_prefix}_registry") else None
    if entry and entry.search_params:
        return {k: int(v) for k, v in json.loads(entry.search_params).items()}
    return {"nprobe": entry.nprobe if entry and entry.nprobe else settings.index.nprobe}
