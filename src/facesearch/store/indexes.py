"""Vector indexes: build with the given parameters, read them back (Lite drops nlist silently), wait for server builds."""

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


class IndexesMixin(StoreConnection):
    """Index builds, verified by describe_index."""

    # -- index ------------------------------------------------------------------------------
    def _index_params(self, index_type: str, metric_type: str, nlist: int) -> Any:
        params = self._client.prepare_index_params()
        params.add_index(field_name="embedding", index_type=index_type, metric_type=metric_type, params=ivf_index_params(nlist))
        return params

    @retrying
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

    @retrying
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
