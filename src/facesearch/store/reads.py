"""Reading faces: scalar queries, counts, batched iteration, and vector search."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from facesearch.store.connection import StoreConnection, retrying
from facesearch.store.records import HIT_FIELDS, PACKED_HIT_FIELDS, SCALAR_FIELDS, FaceRecord, Hit, hit_from_row, quote
from facesearch.store.stub_search import STUB_CONSISTENCY, hits_from_results

log = logging.getLogger(__name__)


class ReadsMixin(StoreConnection):
    """Face rows and nearest neighbours out."""

    @retrying
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

    @retrying
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

    # -- search -----------------------------------------------------------------------------
    @retrying
    def search(
        self, name: str, vectors: np.ndarray, k: int, nprobe: int | None = None, filter: str = "", radius: float | None = None,
        search_params: dict[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """Top-``k`` L2 neighbours for each query vector, nearest first (one Milvus call).

        ``search_params`` (``{"ef": 64}`` for HNSW, ``{"search_list": 32}`` for DISKANN, ``{"nprobe": 8}``
        for IVF) is what the index type needs; without it, ``nprobe`` (IVF).

        With ``radius``, only hits with L2 distance below it are returned (Milvus range search).
        Distances are reported as true L2 (Milvus returns squared L2 for the L2 metric).
        """
        self.ensure_loaded(name)
        if len(vectors) == 0:
            return []
        inner = {k: int(v) for k, v in search_params.items()} if search_params else {}
        if not inner and nprobe is not None:
            inner = {"nprobe": int(nprobe)}
        params: dict[str, Any] = {"metric_type": "L2", "params": inner}
        if radius is not None:
            params["params"].update({"radius": float(radius) ** 2, "range_filter": 0.0})
        return self.on_current_schema(name, lambda: self._search_hits(name, vectors, k, params, filter))

    def _search_hits(self, name: str, vectors: np.ndarray, k: int, params: dict[str, Any], filter: str) -> list[list[Hit]]:
        packed = self.packs_hits(name)
        hits = self._search_fields(name, vectors, k, params, filter, PACKED_HIT_FIELDS if packed else HIT_FIELDS)
        return self._with_long_paths(name, hits) if packed else hits

    def _with_long_paths(self, name: str, hits: list[list[Hit]]) -> list[list[Hit]]:
        """Fill in the paths of packed hits whose paths did not fit in ``hit_json`` (records.pack_hit)."""
        missing = {h.id for row in hits for h in row if not h.image_paths}
        if not missing:
            return hits
        rows = self._client.query(name, filter=f"id in [{', '.join(map(str, sorted(missing)))}]", output_fields=["image_paths"])
        paths = {int(r["id"]): list(r["image_paths"]) for r in rows}
        return [[replace(h, image_paths=paths.get(h.id, [])) if h.id in missing else h for h in row] for row in hits]

    def _search_fields(self, name: str, vectors: np.ndarray, k: int, params: dict[str, Any], filter: str, fields: list[str]) -> list[list[Hit]]:
        consistency = self.settings.search_consistency
        if (stub := self.stub_searcher) is not None and consistency in STUB_CONSISTENCY:
            return hits_from_results(stub.search(name, vectors, int(k), params, filter, fields, consistency))
        result = self._client.search(
            name,
            data=np.asarray(vectors, dtype=np.float32).tolist(),
            limit=int(k),
            filter=filter,
            search_params=params,
            output_fields=fields,
            consistency_level=consistency,
        )
        return [[hit_from_row(h) for h in hits] for hits in result]

    @retrying
    def neighbour_ids(self, name: str, vectors: np.ndarray, k: int, nprobe: int) -> list[list[tuple[int, float]]]:
        """Top-``k`` (id, true L2 distance) per vector, nearest first, with no fields fetched (clustering's search).

        Ids only: on Milvus Lite the cost of a batch grows with what it returns (HIT_FIELDS cost ~4x).
        """
        self.ensure_loaded(name)
        if len(vectors) == 0:
            return []
        result = self._client.search(
            name,
            data=np.asarray(vectors, dtype=np.float32).tolist(),
            limit=int(k),
            search_params={"metric_type": "L2", "params": {"nprobe": int(nprobe)}},
            output_fields=[],
            consistency_level=self.settings.search_consistency,
        )
        return [[(int(h["id"]), float(np.sqrt(max(float(h["distance"]), 0.0)))) for h in hits] for hits in result]
