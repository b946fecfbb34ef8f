"""Searches on a Milvus server sent on pymilvus' own gRPC stub, the reply read column by column.

Why: at 100k faces on the local standalone a search costs ~5-6 ms, ~2 ms of it client CPU (the gRPC call
itself ~1 ms); pymilvus 3.0.2's share is building the request from lists and turning the reply into one dict
per hit. Sending pymilvus' request on its stub and reading the reply column-wise saves ~0.3-0.5 ms (measured
2026-12-02, bench/bench_stub_search.py: p50 4.94 vs 5.23 ms, client CPU 1.68 vs 2.02 ms). Here pymilvus still builds the request
(``Prepare.search_requests_with_expr``, once per collection, k, params, filter and fields) and the query
vectors (``_prepare_placeholder_str``); per call only the vectors change. Consistency levels whose
guarantee timestamp changes per call (Session) are left to ``MilvusClient.search``; so is Milvus Lite.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from facesearch.store.records import HIT_JSON, Hit, hit_from_packed, hit_from_values

# The guarantee timestamps pymilvus sends for these levels are constants (Strong 0, Bounded 2, Eventually 1).
STUB_CONSISTENCY = frozenset({"Strong", "Bounded", "Eventually"})
MAX_REQUESTS = 256


class RpcFailed(Exception):
    """A gRPC error in one line (code and details), so the store's retry and error layers can read it."""


class StubSearcher:
    """Search requests built once by pymilvus per shape, sent on the client's stub; thread-safe."""

    def __init__(self, client: Any, db_name: str, timeout_s: float) -> None:
        from pymilvus.client.call_context import CallContext

        self.client = client
        self._handler = client._get_connection()
        self._context = CallContext(db_name=db_name)  # its metadata carries the call's time: built per call, as pymilvus does
        self._timeout_s = timeout_s
        self._requests: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()

    def _request(self, name: str, dim: int, k: int, params: dict[str, Any], filter: str, fields: Sequence[str], consistency: str) -> Any:
        key = (name, dim, k, repr(sorted(params.items())), filter, tuple(fields), consistency)
        with self._lock:
            request = self._requests.get(key)
        if request is None:
            from pymilvus.client import ts_utils
            from pymilvus.client.prepare import Prepare

            kwargs: dict[str, Any] = {"consistency_level": consistency}
            use_default = ts_utils.construct_guarantee_ts(name, kwargs, self._handler.server_address, "")
            request = Prepare.search_requests_with_expr(
                collection_name=name,
                anns_field="",
                param=params,
                limit=k,
                data=[np.zeros(dim, dtype=np.float32)],
                expr=filter,
                output_fields=list(fields),
                round_decimal=-1,
                use_default_consistency=use_default,
                **kwargs,
            )
            with self._lock:
                if len(self._requests) >= MAX_REQUESTS:  # filters with values in them make new shapes
                    self._requests.clear()
                self._requests[key] = request
        return request

    def search(self, name: str, vectors: np.ndarray, k: int, params: dict[str, Any], filter: str, fields: Sequence[str], consistency: str) -> Any:
        """The raw ``SearchResultData`` for ``vectors`` (rows float32)."""
        import grpc
        from pymilvus.client.prepare import Prepare
        from pymilvus.client.utils import check_status

        rows = np.ascontiguousarray(vectors, dtype=np.float32)
        request = type(template := self._request(name, rows.shape[1], k, params, filter, fields, consistency))()
        request.CopyFrom(template)
        request.placeholder_group = Prepare._prepare_placeholder_str(list(rows))
        request.nq = len(rows)
        try:
            response = self._handler._stub.Search(request, timeout=self._timeout_s, metadata=self._context.to_grpc_metadata())
        except grpc.RpcError as exc:
            raise RpcFailed(f"{exc.code().name}: {exc.details()}") from exc  # type: ignore[attr-defined]
        check_status(response.status)
        return response.results


def hits_from_results(results: Any) -> list[list[Hit]]:
    """Hits per query from a ``SearchResultData`` with the PACKED_HIT_FIELDS or HIT_FIELDS columns, nearest first."""
    columns = {fd.field_name: fd.scalars for fd in results.fields_data}
    ids = results.ids.int_id.data
    scores = results.scores
    if HIT_JSON in columns:
        packed = columns[HIT_JSON].string_data.data
        return _per_query(results.topks, [hit_from_packed(ids[i], scores[i], packed[i]) for i in range(len(ids))])
    paths = columns["image_path"].string_data.data
    sha256s = columns["image_sha256"].string_data.data
    face_indexes = columns["face_index"].long_data.data
    identities = columns["identity"].string_data.data
    bboxes = columns["bbox"].array_data.data
    # collections made before these fields existed have no such column: None takes hit_from_values' defaults
    phashes = columns["image_phash"].long_data.data if "image_phash" in columns else [None] * len(ids)
    all_paths = [a.string_data.data for a in columns["image_paths"].array_data.data] if "image_paths" in columns else [None] * len(ids)
    hits = [
        hit_from_values(ids[i], scores[i], paths[i], sha256s[i], face_indexes[i], bboxes[i].float_data.data, identities[i], phashes[i], all_paths[i])
        for i in range(len(ids))
    ]
    return _per_query(results.topks, hits)


def _per_query(topks: Sequence[int], hits: list[Hit]) -> list[list[Hit]]:
    out: list[list[Hit]] = []
    start = 0
    for count in topks:
        out.append(hits[start : start + count])
        start += count
    return out
