"""Face collections: naming, create with schema and index, list, drop, load, flush, dimension and encoder."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from facesearch.errors import (
    StoreError,
)
from facesearch.settings import IndexSettings
from facesearch.store.connection import StoreConnection, retrying
from facesearch.store.records import HIT_JSON, HIT_JSON_MAX_LEN, MAX_PATH_LEN, MAX_PATHS_PER_IMAGE

log = logging.getLogger(__name__)

T = TypeVar("T")


LITE_COMFORTABLE_ROWS = 20_000  # past this, Milvus Lite searches pass ~15 ms (bench/results); a server stays flat


class CollectionsMixin(StoreConnection):
    """Collection lifecycle on the connected Milvus."""

    # -- collections and aliases ------------------------------------------------------------
    def collection_name(self, encoder_id: str, suffix: str = "") -> str:
        """``face_search__dlib_resnet_v1`` (+ ``__<suffix>``): Milvus allows [A-Za-z0-9_] only."""
        parts = [self.settings.collection_prefix, encoder_id, suffix]
        return "__".join(p.replace("-", "_").replace(".", "_") for p in parts if p)

    @retrying
    def list_collections(self) -> list[str]:
        return list(self._client.list_collections())

    @retrying
    def has_collection(self, name: str) -> bool:
        return bool(self._client.has_collection(name))

    @retrying
    def drop_collection(self, name: str) -> None:
        self._packs_hits.clear()  # an alias may have pointed at it
        self._client.drop_collection(name)

    @retrying
    def packs_hits(self, name: str) -> bool:
        """True when ``name`` (a collection or an alias) has the packed ``hit_json`` field.

        Collections made before it existed have not (Milvus 2.3 cannot add a field); they are read and
        written as before. Cached per name: a collection's schema never changes, and callers that meet
        an error naming the field (an alias moved by another process) call :meth:`forget_schema`.
        """
        known = self._packs_hits.get(name)
        if known is None:
            fields = self._client.describe_collection(name)["fields"]
            known = self._packs_hits[name] = any(f["name"] == HIT_JSON for f in fields)
        return known

    def forget_schema(self, name: str) -> None:
        self._packs_hits.pop(name, None)

    def on_current_schema(self, name: str, call: Callable[[], T]) -> T:
        """``call()``; once more, with ``name``'s schema asked again, when it failed naming ``hit_json``:
        another process moved the alias to a collection of the other schema."""
        try:
            return call()
        except Exception as exc:
            if HIT_JSON not in str(exc):
                raise
            self.forget_schema(name)
            return call()

    @retrying
    def ensure_collection(self, name: str, dim: int, index: IndexSettings) -> bool:
        """Create ``name`` with the face schema and a verified IVF index; True if it was created."""
        if self._client.has_collection(name):
            existing = self.dimension(name)
            if existing != dim:
                from facesearch.errors import EncoderMismatchError

                raise EncoderMismatchError(f"collection {name} holds {existing}-d vectors, the encoder makes {dim}-d")
            self.ensure_loaded(name)
            return False
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("image_path", DataType.VARCHAR, max_length=MAX_PATH_LEN)
        schema.add_field(
            "image_paths", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=MAX_PATHS_PER_IMAGE, max_length=MAX_PATH_LEN
        )
        schema.add_field("image_sha256", DataType.VARCHAR, max_length=64)
        schema.add_field("image_phash", DataType.INT64)
        schema.add_field("face_index", DataType.INT64)
        schema.add_field("bbox", DataType.ARRAY, element_type=DataType.FLOAT, max_capacity=4)
        schema.add_field("det_prob", DataType.FLOAT)
        schema.add_field("identity", DataType.VARCHAR, max_length=512)
        schema.add_field("encoder", DataType.VARCHAR, max_length=64)
        schema.add_field(HIT_JSON, DataType.VARCHAR, max_length=HIT_JSON_MAX_LEN)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dim)
        index_params = self._index_params(index.index_type, index.metric_type, index.nlist)
        self._client.create_collection(name, schema=schema, index_params=index_params, consistency_level="Strong")
        self._verify_index(name, index.index_type, index.nlist)
        self._loaded.add(name)
        self._packs_hits[name] = True
        log.info("created collection %s (%d-d, %s nlist=%d)", name, dim, index.index_type, index.nlist)
        return True

    def dimension(self, name: str) -> int:
        desc = self._client.describe_collection(name)
        for f in desc["fields"]:
            if f["name"] == "embedding":
                return int(f["params"]["dim"])
        raise StoreError(f"collection {name} has no 'embedding' field: not a FaceSearch collection")

    @retrying
    def encoder_of(self, name: str) -> str | None:
        """The encoder id stored in the collection's rows (None when it is empty)."""
        self.ensure_loaded(name)
        rows = self._client.query(name, filter="id >= 0 or id < 0", output_fields=["encoder"], limit=1)
        return rows[0]["encoder"] if rows else None

    @retrying
    def flush(self, name: str) -> None:
        """Seal written rows into segments. Milvus Lite searches unflushed rows by brute force in Python
        (1.7 s per query at 100k rows, and an nq x N x d array per batch), so bulk writers flush when done."""
        self._client.flush(name)
        if self.on_lite:
            self._advise_on_size(name)

    def _advise_on_size(self, name: str) -> None:
        """Milvus Lite's search cost grows with every stored row (bench: 7 ms at 10k, 57 ms at 100k)."""
        rows = self.count(name)
        if rows > LITE_COMFORTABLE_ROWS:
            log.warning(
                "%s holds %d faces in Milvus Lite, whose searches slow down linearly past ~%d rows "
                "(57 ms at 100k); the local Milvus standalone keeps them at 3-4 ms: the store moves there on its own "
                "at milvus.auto_server_faces=%d (0 = never), or now with `facesearch store move` (README: Performance)",
                name, rows, LITE_COMFORTABLE_ROWS, self.settings.auto_server_faces,
            )

    @retrying
    def ensure_loaded(self, name: str) -> None:
        """Load a collection once per store (Milvus Lite reopens collections released)."""
        if name in self._loaded:
            return
        state = str(self._client.get_load_state(name).get("state", ""))
        if "Loaded" not in state:
            log.debug("loading collection %s (state %s)", name, state)
            self._client.load_collection(name)
        self._loaded.add(name)
