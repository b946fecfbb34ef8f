"""Milvus access through pymilvus ``MilvusClient``: one class, one job (faces in and out of Milvus).

The same code serves Milvus Lite (``milvus.uri`` is a path ending in ``.db``) and a Milvus
server or cluster (``http://host:19530``). Index parameters are read back after every build
because milvus-lite 3.2.2 silently drops ``nlist`` when it is given in the documented form.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from facesearch.errors import (
    CollectionNotFoundError,
    IndexParamsNotHonouredError,
    StoreBusyError,
    StoreError,
    StoreUnavailableError,
)
from facesearch.settings import IndexSettings, MilvusSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_PATH_LEN = 4096
MAX_PATHS_PER_IMAGE = 64
LITE_COMFORTABLE_ROWS = 20_000  # past this, Milvus Lite searches pass ~15 ms (bench/results); a server stays flat
SCALAR_FIELDS = ["image_path", "image_paths", "image_sha256", "image_phash", "face_index", "bbox", "det_prob", "identity", "encoder"]
HIT_FIELDS = ["image_path", "image_paths", "image_sha256", "image_phash", "face_index", "bbox", "identity"]


@dataclass(frozen=True)
class FaceRecord:
    """One face row. ``image_paths`` lists every path where these exact bytes were seen."""

    id: int
    image_path: str
    image_paths: list[str]
    image_sha256: str
    image_phash: int
    face_index: int
    bbox: list[float]
    det_prob: float
    identity: str
    encoder: str
    embedding: np.ndarray

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "image_path": self.image_path,
            "image_paths": self.image_paths[:MAX_PATHS_PER_IMAGE],
            "image_sha256": self.image_sha256,
            "image_phash": int(self.image_phash),
            "face_index": self.face_index,
            "bbox": [float(v) for v in self.bbox],
            "det_prob": float(self.det_prob),
            "identity": self.identity,
            "encoder": self.encoder,
            "embedding": np.asarray(self.embedding, dtype=np.float32).tolist(),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> FaceRecord:
        return cls(
            id=int(row["id"]),
            image_path=row["image_path"],
            image_paths=list(row["image_paths"]),
            image_sha256=row["image_sha256"],
            image_phash=int(row["image_phash"]),
            face_index=int(row["face_index"]),
            bbox=[float(v) for v in row["bbox"]],
            det_prob=float(row["det_prob"]),
            identity=row["identity"],
            encoder=row["encoder"],
            embedding=np.asarray(row["embedding"], dtype=np.float32),
        )


@dataclass(frozen=True)
class Hit:
    id: int
    distance: float
    image_path: str
    image_sha256: str
    face_index: int
    bbox: list[float]
    identity: str
    image_phash: int = 0
    image_paths: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class IndexInfo:
    index_type: str
    metric_type: str
    nlist: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.index_type, "nlist": self.nlist, "metric": self.metric_type}


def _is_transient(exc: Exception) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("unavailable", "deadline", "connection refused", "connect", "timeout", "timed out"))


def _retrying(method: Callable[..., T]) -> Callable[..., T]:
    """Retry transient Milvus I/O errors with exponential backoff, bounded by ``milvus.retries``."""

    @functools.wraps(method)
    def wrapper(self: FaceStore, *args: Any, **kwargs: Any) -> T:
        attempts = self.settings.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return method(self, *args, **kwargs)
            except StoreError:
                raise
            except Exception as exc:
                if not _is_transient(exc):
                    raise self._wrap(exc, method.__name__) from exc
                if attempt == attempts:
                    raise StoreUnavailableError(
                        f"Milvus at {self.settings.uri} failed {method.__name__} after {attempts} attempts: {exc}"
                    ) from exc
                delay = self.settings.retry_backoff_s * 2 ** (attempt - 1)
                log.warning("Milvus %s failed (%s); retry %d/%d in %.1fs", method.__name__, exc, attempt, attempts - 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    return wrapper


def quiet_pymilvus_logging() -> None:
    """pymilvus logs a traceback for every failed RPC; we report errors ourselves.

    Call after importing pymilvus: its import runs ``logging.config.dictConfig`` and resets levels.
    """
    for name in ("pymilvus", "pymilvus.milvus_client", "pymilvus.bulk_writer", "grpc._server"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def ivf_index_params(nlist: int) -> dict[str, Any]:
    """IVF params in the nested form that both milvus-lite 3.2.2 and Milvus servers honour."""
    return {"params": {"nlist": int(nlist)}}


def parse_index_description(desc: dict[str, Any]) -> IndexInfo:
    """Read type/metric/nlist from ``describe_index`` output of Lite (nested dict) or a server (flat strings)."""
    params: Any = desc.get("params", {})
    if isinstance(params, str):
        params = json.loads(params or "{}")
    nlist = desc.get("nlist", params.get("nlist") if isinstance(params, dict) else None)
    if nlist is None and isinstance(params, dict) and isinstance(params.get("params"), dict):
        nlist = params["params"].get("nlist")
    return IndexInfo(
        index_type=str(desc.get("index_type", "")),
        metric_type=str(desc.get("metric_type", "")),
        nlist=int(nlist) if nlist is not None else None,
    )


def quote(value: str) -> str:
    """A string literal for a Milvus boolean expression."""
    return json.dumps(value, ensure_ascii=False)


class FaceStore:
    """Faces in Milvus: collections, index builds (verified), upserts, searches, aliases."""

    def __init__(self, settings: MilvusSettings) -> None:
        self.settings = settings
        self._loaded: set[str] = set()
        self._client = self._connect()

    # -- connection -------------------------------------------------------------------------
    def _connect(self) -> Any:
        from pymilvus import MilvusClient

        quiet_pymilvus_logging()
        uri = self.settings.uri
        if self.settings.is_local_lite:
            if not uri.endswith(".db"):
                raise StoreError(f"milvus.uri {uri!r}: a Milvus Lite path must end in .db (or use http://host:port)")
            Path(uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
            uri = str(Path(uri).expanduser())
        attempts = self.settings.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                client = MilvusClient(uri=uri, token=self.settings.token, db_name=self.settings.db_name, timeout=self.settings.timeout_s)
                client.list_collections()
                return client
            except Exception as exc:
                if self.settings.is_local_lite and lite_dir_locked(Path(uri)):
                    raise StoreBusyError(
                        f"Milvus Lite data dir {uri} is in use by another process (one process per data dir); "
                        "wait for it, or share one store between processes: `facesearch store start` runs a local "
                        "Milvus server, then set milvus.uri to the URI it prints"
                    ) from exc
                if attempt == attempts or self.settings.is_local_lite:
                    raise StoreUnavailableError(f"cannot reach Milvus at {self.settings.uri}: {_first_line(exc)}") from exc
                delay = self.settings.retry_backoff_s * 2 ** (attempt - 1)
                log.warning("cannot reach Milvus at %s (%s); retry %d/%d in %.1fs", uri, _first_line(exc), attempt, attempts - 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")

    @property
    def client(self) -> Any:
        """The underlying ``MilvusClient`` (for the registry; prefer the methods here)."""
        return self._client

    def close(self) -> None:
        try:
            self._client.close()
        except Exception as exc:  # closing a dead connection must not mask the real error
            log.debug("ignoring error on close: %s", exc)

    def __enter__(self) -> FaceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wrap(self, exc: Exception, operation: str) -> StoreError:
        text = _first_line(exc)
        if "not exist" in text.lower() or "not found" in text.lower():
            return CollectionNotFoundError(f"{operation}: {text}")
        return StoreError(f"Milvus at {self.settings.uri} failed {operation}: {text}")

    # -- collections and aliases ------------------------------------------------------------
    def collection_name(self, encoder_id: str, suffix: str = "") -> str:
        """``face_search__dlib_resnet_v1`` (+ ``__<suffix>``): Milvus allows [A-Za-z0-9_] only."""
        parts = [self.settings.collection_prefix, encoder_id, suffix]
        return "__".join(p.replace("-", "_").replace(".", "_") for p in parts if p)

    @_retrying
    def list_collections(self) -> list[str]:
        return list(self._client.list_collections())

    @_retrying
    def has_collection(self, name: str) -> bool:
        return bool(self._client.has_collection(name))

    @_retrying
    def alias_target(self, alias: str) -> str | None:
        """The collection an alias points at, or None if no such alias exists.

        ``describe_collection`` resolves aliases on Milvus Lite and servers alike; ``describe_alias``
        right after ``create_alias`` was seen to answer "does not exist" on Milvus 2.3.5.
        """
        try:
            name = str(self._client.describe_collection(alias)["collection_name"])
        except Exception as exc:
            if "not exist" in str(exc).lower() or "not found" in str(exc).lower():
                return None
            raise
        return name if name != alias else None

    def resolve(self, name: str) -> str:
        """Alias or collection name -> collection name; CollectionNotFoundError if neither exists."""
        target = self.alias_target(name)
        if target is None and self.has_collection(name):
            target = name
        if target is not None:
            self.ensure_loaded(target)
            return target
        raise CollectionNotFoundError(
            f"no collection or alias {name!r} in Milvus at {self.settings.uri}; index some photos first (facesearch index PATH)"
        )

    @_retrying
    def point_alias(self, alias: str, collection: str) -> str | None:
        """Create or move ``alias`` to ``collection`` in one call; returns the previous target."""
        previous = self.alias_target(alias)
        if previous is None:
            self._client.create_alias(collection_name=collection, alias=alias)
        elif previous != collection:
            self._client.alter_alias(collection_name=collection, alias=alias)
        return previous

    @_retrying
    def drop_collection(self, name: str) -> None:
        self._client.drop_collection(name)

    @_retrying
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
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dim)
        index_params = self._index_params(index.index_type, index.metric_type, index.nlist)
        self._client.create_collection(name, schema=schema, index_params=index_params, consistency_level="Strong")
        self._verify_index(name, index.index_type, index.nlist)
        self._loaded.add(name)
        log.info("created collection %s (%d-d, %s nlist=%d)", name, dim, index.index_type, index.nlist)
        return True

    def dimension(self, name: str) -> int:
        desc = self._client.describe_collection(name)
        for f in desc["fields"]:
            if f["name"] == "embedding":
                return int(f["params"]["dim"])
        raise StoreError(f"collection {name} has no 'embedding' field: not a FaceSearch collection")

    @_retrying
    def encoder_of(self, name: str) -> str | None:
        """The encoder id stored in the collection's rows (None when it is empty)."""
        self.ensure_loaded(name)
        rows = self._client.query(name, filter="id >= 0 or id < 0", output_fields=["encoder"], limit=1)
        return rows[0]["encoder"] if rows else None

    # -- index ------------------------------------------------------------------------------
    def _index_params(self, index_type: str, metric_type: str, nlist: int) -> Any:
        params = self._client.prepare_index_params()
        params.add_index(field_name="embedding", index_type=index_type, metric_type=metric_type, params=ivf_index_params(nlist))
        return params

    @_retrying
    def index_info(self, name: str) -> IndexInfo:
        return parse_index_description(self._client.describe_index(name, "embedding"))

    def _verify_index(self, name: str, index_type: str, nlist: int) -> IndexInfo:
        info = self.index_info(name)
        if info.index_type != index_type or info.nlist != nlist:
            raise IndexParamsNotHonouredError(
                f"asked Milvus for {index_type} nlist={nlist} on {name}, describe_index reports "
                f"{info.index_type} nlist={info.nlist}"
            )
        return info

    @_retrying
    def rebuild_index(self, name: str, nlist: int, index_type: str = "IVF_FLAT", metric_type: str = "L2") -> IndexInfo:
        """Replace the vector index of ``name`` (release, drop, create, verify, load)."""
        self._client.release_collection(name)
        self._loaded.discard(name)
        self._client.drop_index(name, "embedding")
        self._client.create_index(name, self._index_params(index_type, metric_type, nlist))
        info = self._verify_index(name, index_type, nlist)
        self.wait_for_index(name)
        self._client.load_collection(name)
        self._loaded.add(name)
        return info

    def wait_for_index(self, name: str) -> None:
        """Block until every row is indexed: servers build in the background, and a search before that
        brute-forces the unindexed segments (slow, and a sweep would measure the wrong thing)."""
        deadline = time.monotonic() + self.settings.index_build_timeout_s
        while True:
            desc = self._client.describe_index(name, "embedding")
            indexed, total, pending = desc.get("indexed_rows"), desc.get("total_rows"), desc.get("pending_index_rows", 0)
            if indexed is None or (indexed >= (total or 0) and not pending):
                return
            if time.monotonic() > deadline:
                raise StoreError(f"index of {name} still building after {self.settings.index_build_timeout_s:.0f} s ({indexed}/{total} rows)")
            time.sleep(0.5)

    @_retrying
    def flush(self, name: str) -> None:
        """Seal written rows into segments. Milvus Lite searches unflushed rows by brute force in Python
        (1.7 s per query at 100k rows, and an nq x N x d array per batch), so bulk writers flush when done."""
        self._client.flush(name)
        if self.settings.is_local_lite:
            self._advise_on_size(name)

    def _advise_on_size(self, name: str) -> None:
        """Milvus Lite's search cost grows with every stored row (bench: 7 ms at 10k, 57 ms at 100k)."""
        rows = self.count(name)
        if rows > LITE_COMFORTABLE_ROWS:
            log.warning(
                "%s holds %d faces in Milvus Lite, whose searches slow down linearly past ~%d rows "
                "(57 ms at 100k); `facesearch store start` and FACESEARCH__MILVUS__URI=http://127.0.0.1:19530 "
                "keep them at 3-4 ms (README: Performance)",
                name, rows, LITE_COMFORTABLE_ROWS,
            )

    @_retrying
    def ensure_loaded(self, name: str) -> None:
        """Load a collection once per store (Milvus Lite reopens collections released)."""
        if name in self._loaded:
            return
        state = str(self._client.get_load_state(name).get("state", ""))
        if "Loaded" not in state:
            log.debug("loading collection %s (state %s)", name, state)
            self._client.load_collection(name)
        self._loaded.add(name)

    # -- rows -------------------------------------------------------------------------------
    @_retrying
    def upsert(self, name: str, records: Sequence[FaceRecord]) -> int:
        self.ensure_loaded(name)
        step = self.settings.insert_batch
        for i in range(0, len(records), step):
            self._client.upsert(name, [r.to_row() for r in records[i : i + step]])
        return len(records)

    @_retrying
    def query(self, name: str, filter: str, fields: Sequence[str], limit: int | None = None) -> list[dict[str, Any]]:
        self.ensure_loaded(name)
        kwargs: dict[str, Any] = {"limit": limit} if limit else {}
        return list(self._client.query(name, filter=filter, output_fields=list(fields), **kwargs))

    def records(self, name: str, filter: str) -> list[FaceRecord]:
        return [FaceRecord.from_row(r) for r in self.query(name, filter, ["id", *SCALAR_FIELDS, "embedding"])]

    def records_for_images(self, name: str, sha256s: Sequence[str]) -> dict[str, list[FaceRecord]]:
        """Existing rows grouped by image hash (for incremental indexing)."""
        found: dict[str, list[FaceRecord]] = {}
        for i in range(0, len(sha256s), 500):
            chunk = sha256s[i : i + 500]
            expr = f"image_sha256 in [{', '.join(quote(s) for s in chunk)}]"
            for rec in self.records(name, expr):
                found.setdefault(rec.image_sha256, []).append(rec)
        return found

    @_retrying
    def count(self, name: str, filter: str = "") -> int:
        self.ensure_loaded(name)
        rows = self._client.query(name, filter=filter, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def iter_rows(self, name: str, fields: Sequence[str], batch_size: int = 1000, filter: str = "") -> Iterator[list[dict[str, Any]]]:
        """Every row of a collection in batches (pymilvus query iterator)."""
        self.ensure_loaded(name)
        try:
            iterator = self._client.query_iterator(name, batch_size=batch_size, filter=filter, output_fields=list(fields))
        except Exception as exc:
            raise self._wrap(exc, "query_iterator") from exc
        try:
            while batch := iterator.next():
                yield batch
        finally:
            iterator.close()

    @_retrying
    def delete_ids(self, name: str, ids: Sequence[int]) -> int:
        self.ensure_loaded(name)
        for i in range(0, len(ids), 1000):
            chunk = [int(x) for x in ids[i : i + 1000]]
            self._client.delete(name, filter=f"id in [{', '.join(map(str, chunk))}]")
        return len(ids)

    # -- search -----------------------------------------------------------------------------
    @_retrying
    def search(
        self, name: str, vectors: np.ndarray, k: int, nprobe: int, filter: str = "", radius: float | None = None
    ) -> list[list[Hit]]:
        """Top-``k`` L2 neighbours for each query vector, nearest first (one Milvus call).

        With ``radius``, only hits with L2 distance below it are returned (Milvus range search).
        Distances are reported as true L2 (Milvus returns squared L2 for the L2 metric).
        """
        self.ensure_loaded(name)
        if len(vectors) == 0:
            return []
        params: dict[str, Any] = {"metric_type": "L2", "params": {"nprobe": int(nprobe)}}
        if radius is not None:
            params["params"].update({"radius": float(radius) ** 2, "range_filter": 0.0})
        result = self._client.search(
            name,
            data=np.asarray(vectors, dtype=np.float32).tolist(),
            limit=int(k),
            filter=filter,
            search_params=params,
            output_fields=HIT_FIELDS,
            consistency_level=self.settings.search_consistency,
        )
        return [[_hit(h) for h in hits] for hits in result]


def _hit(raw: dict[str, Any]) -> Hit:
    entity = raw.get("entity", raw)
    return Hit(
        id=int(raw["id"]),
        distance=float(np.sqrt(max(float(raw["distance"]), 0.0))),
        image_path=entity["image_path"],
        image_sha256=entity["image_sha256"],
        face_index=int(entity["face_index"]),
        bbox=[round(float(v), 1) for v in entity["bbox"]],
        identity=entity["identity"],
        image_phash=int(entity.get("image_phash") or 0),
        image_paths=list(entity.get("image_paths") or []),
    )


def lite_dir_locked(data_dir: Path) -> bool:
    """True when another process holds Milvus Lite's flock on ``data_dir/LOCK``."""
    import fcntl

    lock_file = data_dir / "LOCK"
    if not lock_file.exists():
        return False
    fd = os.open(lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
