"""Writing faces: upserts and deletes by primary key."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from facesearch.store.connection import StoreConnection, retrying
from facesearch.store.records import FaceRecord

log = logging.getLogger(__name__)


class WritesMixin(StoreConnection):
    """Face rows in."""

    # -- rows -------------------------------------------------------------------------------
    @retrying
    def upsert(self, name: str, records: Sequence[FaceRecord]) -> int:
        self.ensure_loaded(name)
        step = self.settings.insert_batch
        for i in range(0, len(records), step):
            self._client.upsert(name, [r.to_row() for r in records[i : i + step]])
        return len(records)

    @retrying
    def delete_ids(self, name: str, ids: Sequence[int]) -> int:
        self.ensure_loaded(name)
        for i in range(0, len(ids), 1000):
            chunk = [int(x) for x in ids[i : i + 1000]]
            self._client.delete(name, filter=f"id in [{', '.join(map(str, chunk))}]")
        return len(ids)
