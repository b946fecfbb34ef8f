"""Writing faces: upserts and deletes by primary key."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

from facesearch.store.connection import StoreConnection, retrying
from facesearch.store.records import HIT_JSON, FaceRecord

log = logging.getLogger(__name__)


class WritesMixin(StoreConnection):
    """Face rows in."""

    # -- rows -------------------------------------------------------------------------------
    @retrying
    def upsert(self, name: str, records: Sequence[FaceRecord]) -> int:
        self.ensure_loaded(name)
        step = self.settings.insert_batch
        for i in range(0, len(records), step):
            chunk = records[i : i + step]
            self.on_current_schema(name, functools.partial(self._upsert_rows, name, chunk))
        return len(records)

    def _upsert_rows(self, name: str, records: Sequence[FaceRecord]) -> None:
        self._client.upsert(name, self._rows_for(name, records))

    def _rows_for(self, name: str, records: Sequence[FaceRecord]) -> list[dict[str, Any]]:
        """Rows as ``name`` takes them: without ``hit_json`` for collections made before it existed."""
        rows = [r.to_row() for r in records]
        if not self.packs_hits(name):
            for row in rows:
                del row[HIT_JSON]
        return rows

    @retrying
    def delete_ids(self, name: str, ids: Sequence[int]) -> int:
        self.ensure_loaded(name)
        for i in range(0, len(ids), 1000):
            chunk = [int(x) for x in ids[i : i + 1000]]
            self._client.delete(name, filter=f"id in [{', '.join(map(str, chunk))}]")
        return len(ids)
