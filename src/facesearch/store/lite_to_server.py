"""Copy a Milvus Lite store to the local Milvus standalone: every collection, its index and its aliases.

Idempotent and safe to kill: rows are upserted by primary key, counts are checked, and the marker
that switches readers to the server (store/moved.py) is written last; an interrupted move is redone
from the start on the next call and leaves the Lite files untouched.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from facesearch.errors import StoreError
from facesearch.settings import MilvusSettings
from facesearch.store.face_store import FaceStore
from facesearch.store.local_server import LocalMilvusServer
from facesearch.store.moved import MovedStore, marker_path, write_marker
from facesearch.store.records import MAX_PATH_LEN

log = logging.getLogger(__name__)


def _schema_like(description: dict[str, Any]) -> Any:
    """A pymilvus schema with the described fields (Lite omits an array's element max_length: 4096 then)."""
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=bool(description.get("auto_id")), enable_dynamic_field=bool(description.get("enable_dynamic_field")))
    for f in description["fields"]:
        params = dict(f.get("params") or {})
        if f["type"] == DataType.ARRAY and f.get("element_type") == DataType.VARCHAR:
            params.setdefault("max_length", MAX_PATH_LEN)
        extra = {"element_type": f["element_type"]} if f.get("element_type") is not None else {}
        schema.add_field(f["name"], f["type"], is_primary=bool(f.get("is_primary")), **params, **extra)
    return schema


def _index_like(source: Any, target: Any, name: str) -> Any:
    params = target.prepare_index_params()
    for index_name in source.list_indexes(name):
        desc = source.describe_index(name, index_name)
        build = desc.get("params", {})
        build = build.get("params", build) if isinstance(build, dict) else {}
        params.add_index(field_name=desc["field_name"], index_type=desc["index_type"], metric_type=desc.get("metric_type", "L2"), params=dict(build))
    return params


def copy_collection(source: FaceStore, target: FaceStore, name: str, batch_size: int = 2000) -> int:
    """Create ``name`` on the target like on the source (schema, index), upsert every row; returns rows copied."""
    described = source.client.describe_collection(name)
    # A fresh copy is inserted: an upsert is a delete + insert on Milvus 2.3, and 100k delete records on an empty
    # collection are filtered on every search until compaction (~3x the p50 at 100k). An earlier, interrupted
    # move left rows: those are upserted (by primary key), so nothing is duplicated.
    exists = target.client.has_collection(name)
    write = target.client.upsert if exists and target.count(name) > 0 else target.client.insert
    if not exists:
        target.client.create_collection(
            name,
            schema=_schema_like(described),
            index_params=_index_like(source.client, target.client, name),
            consistency_level=described.get("consistency_level_name") or "Strong",
        )
    # Written while released, loaded once indexed: rows written to a loaded collection are served from growing
    # segments (brute force) until the query node takes the indexed segments over, seconds to a minute later
    # (the first 200 searches after a 100k move: p50 10.3 ms, then ~5 ms).
    target.release(name)
    fields = [f["name"] for f in described["fields"]]
    copied = 0
    for rows in source.iter_rows(name, fields, batch_size=batch_size):
        write(name, rows)
        copied += len(rows)
    target.client.flush(name)
    target.wait_for_index(name)
    target.ensure_loaded(name)
    return copied


def move_to_server(source: FaceStore, server_dir: Path, faces: int) -> MovedStore:
    """Copy every collection and alias of the Lite store behind ``source`` to the standalone in ``server_dir``."""
    if not source.on_lite:
        raise StoreError(f"{source.uri} is not a Milvus Lite store: nothing to move")
    started = time.monotonic()
    state = LocalMilvusServer(server_dir).ensure_running()
    server_settings = source.settings.model_copy(update={"uri": state.uri, "db_name": "", "token": ""})
    collections = source.list_collections()
    with FaceStore(server_settings) as target:
        for name in collections:
            rows = copy_collection(source, target, name)
            on_server = target.count(name)
            if on_server != rows:
                raise StoreError(f"moving {name} to {state.uri}: {rows} rows in Lite, {on_server} on the server; the Lite store is still in use")
            log.info("copied %s: %d rows to %s", name, rows, state.uri)
        for name in collections:
            for alias in source.client.list_aliases(name).get("aliases", []):
                target.point_alias(alias, name)
    moved = MovedStore(str(Path(source.settings.uri).expanduser().resolve()), str(Path(server_dir).resolve()), faces, collections, time.time())
    marker = write_marker(source.settings.uri, moved)
    log.info(
        "moved %d collections (%d faces) from Milvus Lite to %s in %.1f s; marker %s (Lite files kept)",
        len(collections),
        faces,
        state.uri,
        time.monotonic() - started,
        marker,
    )
    return moved


def maybe_move_to_server(store: FaceStore, collection: str, settings: MilvusSettings) -> MovedStore | None:
    """Move the Lite store once ``collection`` holds ``milvus.auto_server_faces`` faces (0 = never)."""
    threshold = settings.auto_server_faces
    if not threshold or not store.on_lite or marker_path(settings.uri).exists():
        return None
    faces = store.count(collection)
    if faces < threshold:
        return None
    log.info("%s holds %d faces (>= milvus.auto_server_faces=%d): moving the store to the local Milvus standalone", collection, faces, threshold)
    return move_to_server(store, Path(settings.server_dir), faces)
