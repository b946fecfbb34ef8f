"""Milvus access through pymilvus ``MilvusClient``: one class, one job (faces in and out of Milvus).

The same code serves Milvus Lite (``milvus.uri`` is a path ending in ``.db``) and a Milvus
server or cluster (``http://host:19530``). Index parameters are read back after every build
because milvus-lite 3.2.2 silently drops ``nlist`` when it is given in the documented form.
"""

from __future__ import annotations

import logging

from facesearch.store.aliases import AliasesMixin
from facesearch.store.collections import CollectionsMixin
from facesearch.store.indexes import IndexesMixin
from facesearch.store.reads import ReadsMixin
from facesearch.store.writes import WritesMixin

log = logging.getLogger(__name__)


class FaceStore(CollectionsMixin, AliasesMixin, IndexesMixin, WritesMixin, ReadsMixin):
    """Faces in Milvus: collections, index builds (verified), upserts, searches, aliases."""
