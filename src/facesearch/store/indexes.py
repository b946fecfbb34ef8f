"""Vector indexes: build with the given parameters, read them back (Lite drops nlist silently), wait for server builds.

Index types and their parameters: IVF_FLAT / IVF_SQ8 (nlist; search nprobe), IVF_PQ (nlist, m, nbits;
search nprobe), HNSW (M, efConstruction; search ef), DISKANN (no build params; search search_list).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from facesearch.errors import (
    IndexParamsNotHonouredError,
    StoreError,
)
from facesearch.store.connection import StoreConnection, retrying
from facesearch.store.records import IndexInfo

log = logging.getLogger(__name__)

SEARCH_PARAM = {"IVF_FLAT": "nprobe", "IVF_SQ8": "nprobe", "IVF_PQ": "nprobe", "HNSW": "ef", "DISKANN": "search_list", "FLAT": ""}
ID_BYTES = 8  # the INT64 primary key each index keeps beside its codes


def ivf_index_params(nlist: int) -> dict[str, Any]:
    """IVF params in the nested form that both milvus-lite 3.2.2 and Milvus servers honour."""
    return {"params": {"nlist": int(nlist)}}


def index_params(build_params: dict[str, Any]) -> dict[str, Any]:
    """Any index type's build params in the nested form (the one Lite honours)."""
    return {"params": {key: int(value) for key, value in build_params.items()}}


def search_params_for(index_type: str, value: int) -> dict[str, int]:
    """``{"nprobe": v}`` / ``{"ef": v}`` / ``{"search_list": v}`` for the index type."""
    key = SEARCH_PARAM.get(index_type)
    if key is None:
        raise StoreError(f"unknown index type {index_type!r}: known {', '.join(SEARCH_PARAM)}")
    return {key: int(value)} if key else {}


def analytic_bytes_per_vector(index_type: str, dim: int, build_params: dict[str, Any]) -> float:
    """What the index itself holds per vector (codes + id + graph links), from the type's layout."""
    if index_type in ("IVF_FLAT", "FLAT"):
        return 4.0 * dim + ID_BYTES
    if index_type == "IVF_SQ8":
        return 1.0 * dim + ID_BYTES
    if index_type == "IVF_PQ":
        return int(build_params.get("m", dim // 4)) * int(build_params.get("nbits", 8)) / 8 + ID_BYTES
    if index_type == "HNSW":  # raw vectors + 2*M level-0 links (4 bytes each) + ~M/(M-1) upper levels
        m = int(build_params.get("M", 16))
        return 4.0 * dim + 4 * 2 * m + 4 * m / max(1, m - 1) * m + ID_BYTES
    if index_type == "DISKANN":  # in memory: PQ codes at Milvus' default pq_code_budget_gb_ratio 0.125
        return 0.125 * 4 * dim + ID_BYTES
    raise StoreError(f"no memory model for index type {index_type!r}")


def _flat_params(desc: dict[str, Any]) -> dict[str, Any]:
    params: Any = desc.get("params", {})
    if isinstance(params, str):
        params = json.loads(params or "{}")
    out: dict[str, Any] = {}
    if isinstance(params, dict):
        nested = params.get("params")
        if isinstance(nested, str):
            nested = json.loads(nested or "{}")
        out.update({k: v for k, v in params.items() if k != "params"})
        if isinstance(nested, dict):
            out.update(nested)
    out.update({k: v for k, v in desc.items() if k not in ("params", "index_type", "metric_type", "field_name", "index_name")})
    return out


def parse_index_description(desc: dict[str, Any]) -> IndexInfo:
    """Read type/metric/params from ``describe_index`` output of Lite (nested dict) or a server (flat strings)."""
    params = _flat_params(desc)
    nlist = params.get("nlist")
    return IndexInfo(
        index_type=str(desc.get("index_type", "")),
        metric_type=str(desc.get("metric_type", "")),
        nlist=int(nlist) if nlist is not None else None,
        params=params,
    )


class IndexesMixin(StoreConnection):
    """Index builds, verified by describe_index."""

    # -- index ------------------------------------------------------------------------------
    def _index_params(self, index_type: str, metric_type: str, nlist: int, build_params: dict[str, Any] | None = None) -> Any:
        params = self._client.prepare_index_params()
        nested = index_params(build_params) if build_params is not None else ivf_index_params(nlist)
        params.add_index(field_name="embedding", index_type=index_type, metric_type=metric_type, params=nested)
        return params

    @retrying
    def index_info(self, name: str) -> IndexInfo:
        return parse_index_description(self._client.describe_index(name, "embedding"))

    def _verify_index(self, name: str, index_type: str, nlist: int | None, build_params: dict[str, Any] | None = None) -> IndexInfo:
        info = self.index_info(name)
        wanted = dict(build_params) if build_params is not None else {"nlist": nlist}
        reported = {key: info.params.get(key) for key in wanted}
        honoured = all(value is None or str(value) == str(wanted[key]) for key, value in reported.items())
        if "nlist" in wanted and info.nlist != wanted["nlist"]:
            honoured = False  # Lite drops nlist silently when given in the documented form: it must read back
        if info.index_type != index_type or not honoured:
            raise IndexParamsNotHonouredError(
                f"asked Milvus for {index_type} {_fmt(wanted)} on {name}, describe_index reports "
                f"{info.index_type} {_fmt({k: v for k, v in reported.items()})}"
            )
        return info

    @retrying
    def rebuild_index(
        self, name: str, nlist: int | None = None, index_type: str = "IVF_FLAT", metric_type: str = "L2",
        build_params: dict[str, Any] | None = None,
    ) -> IndexInfo:
        """Replace the vector index of ``name`` (release, drop, create, verify, load).

        ``build_params`` (e.g. ``{"M": 16, "efConstruction": 200}``) replaces ``{"nlist": nlist}``.
        """
        if build_params is None and nlist is None:
            raise StoreError(f"rebuild_index({name}) needs nlist or build_params")
        self._client.release_collection(name)
        self._loaded.discard(name)
        self._client.drop_index(name, "embedding")
        self._client.create_index(name, self._index_params(index_type, metric_type, nlist or 0, build_params))
        info = self._verify_index(name, index_type, nlist, build_params)
        self.wait_for_index(name)
        self._client.load_collection(name)
        self._loaded.add(name)
        return info

    def release(self, name: str) -> None:
        """Release a collection from memory (the next read loads it again)."""
        self._client.release_collection(name)
        self._loaded.discard(name)

    def probe_index_type(self, index_type: str, build_params: dict[str, Any], dim: int, timeout_s: float = 120.0) -> str:
        """Build ``index_type`` on a small throw-away collection: "" if the backend builds it, else why not.

        Some refusals are not errors: Milvus 2.3.5 from PyPI accepts DISKANN, then retries a failing build
        ("C Runtime Exception: bad_function_call" in its log) forever with the index "InProgress".
        """
        import numpy as np
        from pymilvus import DataType, MilvusClient

        name = f"{self.settings.collection_prefix}_probe_{index_type.lower()}"
        probe = {k: min(int(v), 16) if k == "nlist" else v for k, v in build_params.items()}
        client = self._client
        try:
            if client.has_collection(name):
                client.drop_collection(name)
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dim)
            client.create_collection(name, schema=schema)
            rows = np.random.default_rng(0).normal(size=(3000, dim)).astype(np.float32)  # servers skip segments < 1024 rows
            client.insert(name, [{"id": i, "embedding": v.tolist()} for i, v in enumerate(rows)])
            client.flush(name)
            client.create_index(name, self._index_params(index_type, "L2", 0, probe), sync=False)  # we wait, with a limit
            self._wait_all_indexed(name, len(rows), timeout_s)
            client.load_collection(name)
            client.search(name, data=[rows[0].tolist()], limit=1, search_params={"params": search_params_for(index_type, 16)})
            return ""
        except Exception as exc:  # noqa: BLE001 - any refusal is the answer
            return f"{type(exc).__name__}: {str(exc).splitlines()[0][:240] if str(exc) else ''}"
        finally:
            try:
                client.drop_collection(name)
            except Exception as exc:  # noqa: BLE001
                log.warning("could not drop probe collection %s: %s", name, exc)

    def _wait_all_indexed(self, name: str, n: int, timeout_s: float) -> None:
        """Until ``n`` rows are indexed (a server's stats lag a fresh flush: 0/0 is not "done" here)."""
        deadline = time.monotonic() + timeout_s
        while True:
            desc = self._client.describe_index(name, "embedding")
            if desc.get("indexed_rows") is None or int(desc["indexed_rows"]) >= n:
                return
            if time.monotonic() > deadline:
                raise StoreError(f"{desc.get('index_type')} not built on {n} rows in {timeout_s:.0f} s "
                                 f"({desc.get('indexed_rows')}/{desc.get('total_rows')} rows, state {desc.get('state')})")
            time.sleep(0.5)

    def wait_for_index(self, name: str, timeout_s: float | None = None) -> None:
        """Block until every row is indexed: servers build in the background, and a search before that
        brute-forces the unindexed segments (slow, and a sweep would measure the wrong thing)."""
        limit = timeout_s if timeout_s is not None else self.settings.index_build_timeout_s
        deadline = time.monotonic() + limit
        while True:
            desc = self._client.describe_index(name, "embedding")
            indexed, total, pending = desc.get("indexed_rows"), desc.get("total_rows"), desc.get("pending_index_rows", 0)
            if indexed is None or (indexed >= (total or 0) and not pending):
                return
            if time.monotonic() > deadline:
                raise StoreError(f"index of {name} still building after {limit:.0f} s ({indexed}/{total} rows)")
            time.sleep(0.5)


def _fmt(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items()) or "(no params)"
