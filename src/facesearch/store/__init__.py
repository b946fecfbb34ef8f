"""Milvus access: face collections, indexes, writes, searches, the serving alias, the collection registry, a local server."""

from facesearch.store.face_store import FaceStore
from facesearch.store.indexes import parse_index_description
from facesearch.store.records import FaceRecord, Hit, quote

__all__ = ["FaceRecord", "FaceStore", "Hit", "parse_index_description", "quote"]
