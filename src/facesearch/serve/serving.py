"""Which collection a command reads or writes, and which encoder matches it.

Searchers always go through the alias ``milvus.alias`` (``face_search``). ``index`` writes into
the collection the alias points at; on an empty store it creates ``face_search__<encoder>``
and points the alias at it.
"""

from __future__ import annotations

import logging

from facesearch.errors import EncoderMismatchError
from facesearch.models.encoders import BACKEND_ENCODER_IDS, FaceEncoder, backend_for, build_encoder
from facesearch.settings import Settings
from facesearch.store import FaceStore

log = logging.getLogger(__name__)


def serving_collection(store: FaceStore, settings: Settings) -> str:
    """The collection behind the serving alias (CollectionNotFoundError when nothing is indexed)."""
    return store.resolve(settings.milvus.alias)


def encoder_for_store(store: FaceStore, settings: Settings) -> FaceEncoder:
    """Build the encoder the serving collection was made with (``auto``), or the configured one."""
    target = store.alias_target(settings.milvus.alias)
    stored = store.encoder_of(target) if target else None
    backend = settings.encoder.backend
    if backend == "auto" and stored:
        backend = backend_for(stored)
        log.info("serving collection %s holds %s faces: using that encoder", target, stored)
    encoder = build_encoder(settings, backend)
    if stored and stored != encoder.encoder_id:
        raise EncoderMismatchError(
            f"{settings.milvus.alias} -> {target} holds {stored} embeddings but encoder.backend={settings.encoder.backend} "
            f"gives {encoder.encoder_id}; use encoder.backend={backend_for(stored)} or re-index into a new collection"
        )
    return encoder


def encoder_for_collection(settings: Settings, collection: str, encoder_id: str) -> FaceEncoder:
    """The encoder that made ``collection``'s rows (``encoder_id``): queries must be embedded in its space.

    ``encoder.backend: auto`` follows the collection; a pinned other backend is EncoderMismatchError.
    """
    backend = backend_for(encoder_id)
    if settings.encoder.backend not in ("auto", backend):
        raise EncoderMismatchError(
            f"{settings.milvus.alias} -> {collection} holds {encoder_id} embeddings but encoder.backend={settings.encoder.backend} "
            f"gives {BACKEND_ENCODER_IDS[settings.encoder.backend]}; use encoder.backend={backend} or auto (follows the served collection)"
        )
    log.info("loading encoder %s for %s", backend, collection)
    return build_encoder(settings, backend)


def ingest_collection(store: FaceStore, settings: Settings, encoder: FaceEncoder) -> str:
    """The collection ``index`` writes into, created (and aliased) on first use."""
    target = store.alias_target(settings.milvus.alias)
    if target is not None:
        store.ensure_collection(target, encoder.dim, settings.index)
        return target
    name = store.collection_name(encoder.encoder_id)
    store.ensure_collection(name, encoder.dim, settings.index)
    store.point_alias(settings.milvus.alias, name)
    log.info("alias %s -> %s", settings.milvus.alias, name)
    return name
