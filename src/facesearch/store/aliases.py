"""The serving alias: what it points at, resolving a name, and moving it in one call."""

from __future__ import annotations

import logging

from facesearch.errors import (
    CollectionNotFoundError,
)
from facesearch.store.connection import StoreConnection, retrying

log = logging.getLogger(__name__)


class AliasesMixin(StoreConnection):
    """Alias reads and the atomic alias move promotion relies on."""

    @retrying
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
            f"no collection or alias {name!r} in Milvus at {self.uri}; index some photos first (facesearch index PATH)"
        )

    @retrying
    def point_alias(self, alias: str, collection: str) -> str | None:
        """Create or move ``alias`` to ``collection`` in one call; returns the previous target."""
        previous = self.alias_target(alias)
        self.forget_schema(alias)
        if previous is None:
            self._client.create_alias(collection_name=collection, alias=alias)
        elif previous != collection:
            self._client.alter_alias(collection_name=collection, alias=alias)
        return previous
