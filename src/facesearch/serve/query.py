"""Search and identify against the serving alias, with models and the Milvus client held open.

:class:`QueryService` is what the CLI, the search flow and the HTTP API share: it resolves the
alias on every call (so a promotion is picked up at once), uses the search params chosen at promotion
(nprobe for IVF, ef for HNSW, search_list for DISKANN), and uses the encoder the serving collection was
made with: a promotion to a collection built by another encoder loads that encoder (once) instead of
embedding queries into the wrong space.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facesearch.errors import FaceSearchError
from facesearch.ingest.images import LoadedImage, load_image
from facesearch.models.encoders import Face, FaceEncoder, build_encoder
from facesearch.serve.forked_embed import embed_aside
from facesearch.serve.identify import identify_faces, identify_json, identity_threshold
from facesearch.serve.search import query_faces, search_faces, search_json
from facesearch.serve.serving import encoder_for_collection, encoder_for_store, serving_collection
from facesearch.settings import Settings
from facesearch.store import FaceStore
from facesearch.store.registry import serving_search_params


@dataclass(frozen=True)
class EmbeddedQuery:
    """A query photo already run through one encoder (``faces``), or the error that run gave (no face)."""

    encoder_id: str
    faces: list[Face] | None
    error: FaceSearchError | None = None


def for_queries(settings: Settings) -> Settings:
    """Queries come one photo at a time: one inference stream, so each call gets every thread (ingest splits them)."""
    return settings.model_copy(update={"inference": settings.inference.model_copy(update={"streams": 1})})


class QueryService:
    def __init__(self, settings: Settings, store: FaceStore | None = None) -> None:
        settings = for_queries(settings)
        self.settings = settings
        self.store = store or FaceStore(settings.milvus)
        self._encoders: dict[str, FaceEncoder] = {}  # per encoder id ("" = an empty store's configured one)
        self._encoder_ids: dict[str, str] = {}  # per collection: its rows' encoder never changes
        self._params: dict[str, dict[str, int]] = {}  # per collection: fixed once it is promoted
        self._lock = threading.Lock()  # one encoder build at a time; a loaded encoder is read without it

    @property
    def encoder(self) -> FaceEncoder:
        """The encoder of the collection served now (the configured one while nothing is indexed)."""
        target = self.store.alias_target(self.settings.milvus.alias)
        return self.encoder_for(target) if target else self._encoder("", lambda: encoder_for_store(self.store, self.settings))

    def encoder_for(self, collection: str) -> FaceEncoder:
        """The encoder ``collection`` was built with: a promotion to another encoder's collection is followed."""
        encoder_id = self._encoder_ids.get(collection) or self.store.encoder_of(collection)
        if not encoder_id:  # an empty collection: nothing to match yet
            return self._encoder("", lambda: encoder_for_store(self.store, self.settings))
        self._encoder_ids[collection] = encoder_id
        return self._encoder(encoder_id, lambda: encoder_for_collection(self.settings, collection, encoder_id))

    def _faces(self, encoder: FaceEncoder, image: LoadedImage, embedded: EmbeddedQuery | None) -> list[Face]:
        if embedded is not None and embedded.encoder_id == encoder.encoder_id:  # same model: its answer (or its NoFaceError) stands
            if embedded.error is not None:
                raise embedded.error
            assert embedded.faces is not None
            return embedded.faces
        return query_faces(encoder, image)

    def _encoder(self, key: str, build: Callable[[], FaceEncoder]) -> FaceEncoder:
        encoder = self._encoders.get(key)
        if encoder is None:
            with self._lock:
                encoder = self._encoders.get(key)
                if encoder is None:
                    encoder = self._encoders[key] = build()
        return encoder

    def target(self) -> tuple[str, int]:
        """(collection behind the alias now, its nprobe: 0 for non-IVF indexes). The alias is resolved on every call."""
        collection, params = self.serving()
        return collection, params.get("nprobe", 0)

    def serving(self) -> tuple[str, dict[str, int]]:
        """(collection behind the alias now, the search params promotion chose for it)."""
        collection = serving_collection(self.store, self.settings)
        if collection not in self._params:
            self._params[collection] = serving_search_params(self.store, self.settings, collection)
        return collection, self._params[collection]

    def search(self, image: LoadedImage, k: int | None = None, label: str | None = None, embedded: EmbeddedQuery | None = None) -> dict[str, Any]:
        collection, params = self.serving()
        encoder = self.encoder_for(collection)
        faces = self._faces(encoder, image, embedded)
        results = search_faces(self.store, collection, faces, k or self.settings.search.k, None, search_params=params)
        threshold = self.settings.identify.thresholds.get(encoder.encoder_id)  # the one identify and people use
        return search_json(label or str(image.path), results, threshold)

    def identify(self, image: LoadedImage, threshold: float | None = None, label: str | None = None, embedded: EmbeddedQuery | None = None) -> dict[str, Any]:
        collection, params = self.serving()
        encoder = self.encoder_for(collection)
        faces = self._faces(encoder, image, embedded)
        limit = threshold if threshold is not None else identity_threshold(self.settings, encoder.encoder_id)
        found = identify_faces(self.store, collection, faces, limit, None, search_params=params)
        return identify_json(label or str(image.path), found, limit)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> QueryService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def embed_configured(settings: Settings, image: LoadedImage) -> EmbeddedQuery:
    """The query photo through the configured encoder (``auto`` = the default one), loaded from cold."""
    encoder = build_encoder(for_queries(settings))
    encoder.load()
    try:
        return EmbeddedQuery(encoder.encoder_id, query_faces(encoder, image))
    except FaceSearchError as exc:
        return EmbeddedQuery(encoder.encoder_id, None, exc)


def _one_shot(settings: Settings, image: str | Path, run: Callable[[QueryService, LoadedImage, EmbeddedQuery | None], dict[str, Any]]) -> dict[str, Any]:
    """A cold CLI query: the models load and embed the photo while the Milvus connection opens.

    Both halves are mostly imports, which hold the GIL: in a fresh single-threaded process the embedding runs
    in a forked child, on the other core (:mod:`facesearch.serve.forked_embed`); elsewhere in a thread. The
    result is used only when the serving collection was made by that same encoder; otherwise the service
    loads the collection's own encoder, as it always does.
    """
    loaded = load_image(Path(image), settings.images)
    with embed_aside(lambda: embed_configured(settings, loaded)) as pending, QueryService(settings) as service:
        return run(service, loaded, pending.result())


def search_image(settings: Settings, image: str | Path, k: int | None = None) -> dict[str, Any]:
    """One-shot search of an image file against the serving alias."""
    return _one_shot(settings, image, lambda service, loaded, embedded: service.search(loaded, k, label=str(image), embedded=embedded))


def identify_image(settings: Settings, image: str | Path, threshold: float | None = None) -> dict[str, Any]:
    return _one_shot(settings, image, lambda service, loaded, embedded: service.identify(loaded, threshold, label=str(image), embedded=embedded))
