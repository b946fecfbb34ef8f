"""Milvus access: face collections, indexes, writes, searches, the serving alias, the collection registry, a local server."""

from facesearch.store.face_store import FaceRecord, FaceStore, Hit, quote

__all__ = ["FaceRecord", "FaceStore", "Hit", "quote"]
