"""Index types beyond IVF_FLAT on Milvus Lite: the sweep measures what Lite builds and skips what it refuses;
promotion builds the chosen type and the query path searches it with the chosen search params."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facesearch.pipeline.promote import promote
from facesearch.pipeline.sweep import run_sweep
from facesearch.store import FaceRecord
from facesearch.store.registry import CollectionRegistry
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


def fill(store, settings, name: str, n: int = 400, seed: int = 0) -> np.ndarray:
    """``n`` clustered unit vectors (face-like: identities with a few photos each)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n // 4, 128))
    vectors = (np.repeat(centres, 4, axis=0) + 0.3 * rng.normal(size=(n, 128))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.ensure_collection(name, 128, settings.index)
    store.upsert(name, [FaceRecord(id=i + 1, image_path=f"/p/{i}.jpg", image_paths=[f"/p/{i}.jpg"], image_sha256=f"{i:064x}",
                                   image_phash=0, face_index=0, bbox=[0, 0, 1, 1], det_prob=0.99, identity=f"id{i // 4}",
                                   encoder="dlib-resnet-v1", embedding=v) for i, v in enumerate(vectors)])
    store.flush(name)
    return vectors


def sweep_settings(tmp_path, milvus_target, **sweep):
    base = {"queries": 20, "latency_queries": 5, "nprobe_grid": [1, 8], "nlist_grid": [16], "hnsw_ef_grid": [16, 64],
            "diskann_search_list_grid": [16], "large_index_types_from": 0}
    return make_settings(tmp_path, milvus_target, sweep={**base, **sweep})


def test_sweep_measures_lite_index_types_and_records_the_refused_ones(tmp_path, milvus_target):
    from facesearch.store import FaceStore

    settings = sweep_settings(tmp_path, milvus_target)
    with FaceStore(settings.milvus) as store:
        name = store.collection_name("dlib-resnet-v1", "sweep")
        fill(store, settings, name)
        result = run_sweep(store, name, settings)
    measured = {t.index_type for t in result.trials}
    assert {"IVF_FLAT", "IVF_SQ8", "HNSW"} <= measured
    skipped = {s["index_type"]: s["reason"] for s in result.skipped}
    if settings.milvus.is_local_lite:  # Lite 3.2.2 has no IVF_PQ (NotImplementedError) and no DISKANN
        assert "IVF_PQ" in skipped and skipped["IVF_PQ"] and "IVF_PQ" not in measured
    assert measured | set(skipped) == {"IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "DISKANN"}
    hnsw = [t for t in result.trials if t.index_type == "HNSW"]
    assert sorted(t.search_params["ef"] for t in hnsw) == [16, 64]  # ef >= k + 1 = 11
    assert all(t.build_params == {"M": 16, "efConstruction": 200} and t.nlist == 0 for t in hnsw)
    assert max(t.recall for t in hnsw) >= 0.9
    for t in result.trials:
        assert 0 < t.p50_ms <= t.p95_ms <= t.p99_ms and t.batched_qps > 0 and t.build_s > 0
        assert t.bytes_per_vector >= 0 and t.index_bytes_per_vector > 0
    sq8 = next(t for t in result.trials if t.index_type == "IVF_SQ8")
    flat = next(t for t in result.trials if t.index_type == "IVF_FLAT")
    assert sq8.index_bytes_per_vector < flat.index_bytes_per_vector
    # below large_index_types_from only IVF_FLAT is swept (the small-collection default)
    small = sweep_settings(tmp_path, milvus_target, large_index_types_from=10_000)
    with FaceStore(small.milvus) as store:
        assert {t.index_type for t in run_sweep(store, name, small).trials} == {"IVF_FLAT"}


def test_promoting_an_hnsw_trial_builds_hnsw_and_queries_search_it_with_ef(tmp_path, milvus_target):
    from facesearch.serve.query import QueryService
    from facesearch.store import FaceStore

    settings = sweep_settings(tmp_path, milvus_target, index_types=["HNSW"], hnsw_ef_grid=[48])
    with FaceStore(settings.milvus) as store:
        serving, candidate = store.collection_name("dlib-resnet-v1", "a"), store.collection_name("dlib-resnet-v1", "b")
        fill(store, settings, serving, n=40)
        vectors = fill(store, settings, candidate, n=200, seed=1)
        store.point_alias(settings.milvus.alias, serving)
        trial = run_sweep(store, candidate, settings).trials[0]
        assert (trial.index_type, trial.search_params) == ("HNSW", {"ef": 48})
        promotion = promote(store, settings, candidate, trial, "test")
        desc = store.client.describe_index(candidate, "embedding")
        assert desc["index_type"] == "HNSW"
        assert store.index_info(candidate).params.get("M") in (16, "16")
        entry = CollectionRegistry(store).get(candidate)
        assert entry.index_type == "HNSW" and json.loads(entry.search_params) == {"ef": 48}
        assert promotion.index_type == "HNSW" and promotion.search_params == {"ef": 48}
    with QueryService(settings) as service:
        collection, params = service.serving()
        assert (collection, params) == (candidate, {"ef": 48})
        hits = service.store.search(collection, vectors[:3], k=5, search_params=params)
        assert [row[0].id for row in hits] == [1, 2, 3]  # each stored vector finds itself first
