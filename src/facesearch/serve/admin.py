"""Delete faces by image path or identity, and describe a collection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from facesearch.store import FaceRecord, FaceStore, quote


def delete_image(store: FaceStore, collection: str, path: Path | str) -> dict[str, int]:
    """Forget one path. Rows are deleted when no other path holds the same bytes."""
    from facesearch.ingest.indexer import canonical_path  # here: `stats` need not import the ingest stack

    target = canonical_path(Path(path))
    records = store.records(collection, f"array_contains(image_paths, {quote(target)})")
    doomed = [r.id for r in records if set(r.image_paths) <= {target}]
    kept = [
        FaceRecord(**{**r.__dict__, "image_paths": rest, "image_path": rest[0]})
        for r in records
        if (rest := [p for p in r.image_paths if p != target])
    ]
    store.delete_ids(collection, doomed)
    if kept:
        store.upsert(collection, kept)
    return {"deleted": len(doomed), "paths_removed": len({r.image_sha256 for r in records})}


def delete_identity(store: FaceStore, collection: str, identity: str) -> dict[str, int]:
    ids = [int(r["id"]) for r in store.query(collection, f"identity == {quote(identity)}", ["id"])]
    store.delete_ids(collection, ids)
    return {"deleted": len(ids)}


def collection_stats(store: FaceStore, collection: str) -> dict[str, Any]:
    """Counts and the index as Milvus reports it (``describe_index``), not as configured."""
    return {
        "collection": collection,
        "faces": store.count(collection),
        "images": store.count(collection, "face_index == 0"),
        "encoder": store.encoder_of(collection),
        "dim": store.dimension(collection),
        "index": store.index_info(collection).as_dict(),
        "backend": "milvus-lite" if store.on_lite else "milvus-server",
    }
