"""FaceStore against a real Milvus Lite database: index parameters, aliases, errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from facesearch.errors import CollectionNotFoundError, IndexParamsNotHonouredError, StoreBusyError
from facesearch.settings import IndexSettings
from facesearch.store import FaceRecord, FaceStore, parse_index_description

pytestmark = pytest.mark.integration


def records(n: int, dim: int = 8, seed: int = 0) -> list[FaceRecord]:
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return [
        FaceRecord(i + 1, f"/p/{i}.jpg", [f"/p/{i}.jpg"], f"{i:064x}", i, 0, [0, 0, 1, 1], 0.99, "", "dlib-resnet-v1", vecs[i])
        for i in range(n)
    ]


def test_nlist_in_force_is_read_back(store: FaceStore):
    store.ensure_collection("c1", 8, IndexSettings(nlist=48, nprobe=4))
    assert store.index_info("c1").nlist == 48
    store.upsert("c1", records(300))
    assert store.rebuild_index("c1", 12).nlist == 12
    assert store.index_info("c1").as_dict() == {"type": "IVF_FLAT", "nlist": 12, "metric": "L2"}


def test_documented_param_form_is_caught_when_dropped(store: FaceStore):
    """milvus-lite 3.2.2 drops nlist given as params={"nlist": N}; our read-back must notice."""
    store.ensure_collection("c2", 8, IndexSettings(nlist=16, nprobe=4))
    client = store._client
    client.release_collection("c2")
    client.drop_index("c2", "embedding")
    params = client.prepare_index_params()
    params.add_index(field_name="embedding", index_type="IVF_FLAT", metric_type="L2", params={"nlist": 64})
    client.create_index("c2", params)
    info = parse_index_description(client.describe_index("c2", "embedding"))
    if info.nlist == 64:
        pytest.skip("this Milvus honours the documented form")
    with pytest.raises(IndexParamsNotHonouredError, match="nlist=64"):
        store._verify_index("c2", "IVF_FLAT", 64)


def test_search_distances_are_true_l2(store: FaceStore):
    store.ensure_collection("c3", 8, IndexSettings(nlist=4, nprobe=4))
    recs = records(50)
    store.upsert("c3", recs)
    query = recs[0].embedding + 0.01
    hits = store.search("c3", query[None], k=5, nprobe=4)[0]
    expected = sorted(np.linalg.norm(np.stack([r.embedding for r in recs]) - query, axis=1))[:5]
    assert [h.distance for h in hits] == pytest.approx(expected, abs=1e-4)
    radius_hits = store.search("c3", query[None], k=50, nprobe=4, radius=float(expected[2]) + 1e-4)[0]
    assert len(radius_hits) == 3


def test_alias_moves_and_resolves(store: FaceStore):
    for name in ("a1", "a2"):
        store.ensure_collection(name, 8, IndexSettings(nlist=4, nprobe=4))
    assert store.point_alias("face_search", "a1") is None
    assert store.resolve("face_search") == "a1"
    assert store.point_alias("face_search", "a2") == "a1"
    assert store.resolve("face_search") == "a2"
    with pytest.raises(CollectionNotFoundError, match="index some photos first"):
        store.resolve("nothing_here")


@pytest.mark.lite_only
def test_reopened_lite_store_is_loaded(settings):
    with FaceStore(settings.milvus) as first:
        first.ensure_collection("c4", 8, IndexSettings(nlist=4, nprobe=4))
        first.upsert("c4", records(20))
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_all()  # what a new process sees: collections come back released
    with FaceStore(settings.milvus) as second:
        assert second.count("c4") == 20


@pytest.mark.lite_only
def test_second_process_gets_store_busy(settings, tmp_path):
    import subprocess
    import sys
    import textwrap

    with FaceStore(settings.milvus) as holder:
        holder.list_collections()
        code = textwrap.dedent(
            f"""
            from facesearch.settings import load_settings
            from facesearch.store import FaceStore
            from facesearch.errors import StoreBusyError
            s = load_settings(overrides={{"milvus": {{"uri": {settings.milvus.uri!r}, "retries": 0}}}})
            try:
                FaceStore(s.milvus)
            except StoreBusyError as exc:
                print("BUSY", exc)
            """
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "BUSY" in out.stdout and "in use by another process" in out.stdout, out.stderr
    assert StoreBusyError.exit_code == 1


@pytest.mark.lite_only
def test_big_lite_collection_advises_a_server(store: FaceStore, monkeypatch, caplog):
    import facesearch.store.collections as store_module

    store.ensure_collection("c5", 8, IndexSettings(nlist=4, nprobe=4))
    store.upsert("c5", records(30))
    monkeypatch.setattr(store_module, "LITE_COMFORTABLE_ROWS", 40)
    caplog.clear()
    with caplog.at_level("WARNING", logger="facesearch.store.collections"):
        store.flush("c5")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "30 rows is under the advisory size"
    monkeypatch.setattr(store_module, "LITE_COMFORTABLE_ROWS", 20)
    with caplog.at_level("WARNING", logger="facesearch.store.collections"):
        store.flush("c5")
    assert "holds 30 faces in Milvus Lite" in caplog.text and "facesearch store move" in caplog.text


def test_registry_errors_are_store_errors(settings):
    """The registry goes through the store's retries: a dead connection is StoreError (503), not a raw pymilvus error."""
    from facesearch.errors import StoreError
    from facesearch.store.registry import CollectionRegistry, RegistryEntry

    store = FaceStore(settings.milvus)
    registry = CollectionRegistry(store)
    registry.put(RegistryEntry(collection="c_reg", encoder="dlib-resnet-v1", nprobe=4))
    assert registry.get("c_reg").nprobe == 4 and [e.collection for e in registry.all()] == ["c_reg"]
    store.close()  # Milvus gone under a live registry
    for call in (lambda: registry.get("c_reg"), registry.all, lambda: registry.put(RegistryEntry("c2", "x")), lambda: registry.remove("c_reg")):
        with pytest.raises(StoreError, match="Milvus at"):
            call()
    fresh = CollectionRegistry(store)  # not yet ensured: its creation goes through the store too
    with pytest.raises(StoreError):
        fresh.get("c_reg")


def test_server_searches_on_the_stub_answer_like_milvus_client(store: FaceStore):
    """On a server FaceStore.search sends pymilvus' request on its gRPC stub: same hits as MilvusClient.search."""
    if store.on_lite:
        assert store.stub_searcher is None  # Lite: always MilvusClient.search
        return
    assert store.stub_searcher is not None
    store.ensure_collection("c_stub", 8, IndexSettings(nlist=4, nprobe=4))
    recs = records(200)
    store.upsert("c_stub", recs)
    store.flush("c_stub")
    queries = np.stack([recs[i].embedding + 0.01 for i in (0, 7, 42)])
    through_stub = store.search("c_stub", queries, k=6, nprobe=4)
    with FaceStore(store.settings.model_copy(update={"stub_search": False})) as plain:
        assert plain.stub_searcher is None
        expected = plain.search("c_stub", queries, k=6, nprobe=4)
    assert [[h.id for h in hits] for hits in through_stub] == [[h.id for h in hits] for hits in expected]
    assert through_stub[0][0].id == recs[0].id
    flat = [(got, want) for got_hits, want_hits in zip(through_stub, expected, strict=True) for got, want in zip(got_hits, want_hits, strict=True)]
    for got, want in flat:
        assert got.distance == pytest.approx(want.distance, abs=1e-5)
        assert (got.image_path, got.image_paths, got.image_sha256, got.image_phash, got.face_index, got.bbox, got.identity) == (
            want.image_path, want.image_paths, want.image_sha256, want.image_phash, want.face_index, want.bbox, want.identity
        )
    filtered = store.search("c_stub", queries[:1], k=6, nprobe=4, filter="image_phash >= 100")[0]
    assert filtered and all(h.image_phash >= 100 for h in filtered)
    with pytest.raises(CollectionNotFoundError):
        store.search("no_such_collection", queries[:1], k=3, nprobe=4)


def _legacy_collection(store: FaceStore, like: str, name: str) -> None:
    """``name`` with ``like``'s schema and index but no ``hit_json``: a collection made before the field existed."""
    from facesearch.store.lite_to_server import _schema_like
    from facesearch.store.records import HIT_JSON

    described = store.client.describe_collection(like)
    described = {**described, "fields": [f for f in described["fields"] if f["name"] != HIT_JSON]}
    store.client.create_collection(name, schema=_schema_like(described))
    index = store.index_info(like)
    store.client.create_index(name, store._index_params(index.index_type, index.metric_type, index.nlist or 0))
    store.rebuild_index(name, index.nlist, index.index_type, index.metric_type)


def _fields(hit) -> tuple:
    return (hit.id, hit.image_path, hit.image_paths, hit.image_sha256, hit.image_phash, hit.face_index, hit.bbox, hit.identity)


def test_hits_are_read_from_the_packed_field(store: FaceStore):
    """New collections carry hit_json; a search returns exactly what was written, odd characters and paths too
    long to pack included."""
    from facesearch.store.records import HIT_JSON, HIT_JSON_MAX_LEN, pack_hit

    store.ensure_collection("c_packed", 8, IndexSettings(nlist=4, nprobe=4))
    assert store.packs_hits("c_packed")
    recs = records(60)
    recs[5] = FaceRecord(6, '/p/Zoë "quoted"\\x.jpg', ['/p/Zoë "quoted"\\x.jpg', "/q/ü.jpg"], "ab" * 32, 2**62, 3, [1.25, 2.5, 30.75, 40.0],
                         0.9, "O'Brien \u00e9\u4e2d", "dlib-resnet-v1", recs[5].embedding)
    long_paths = [f"/{i:02d}/" + "x" * 4000 + ".jpg" for i in range(20)]  # 80 kB of paths: more than a VARCHAR holds
    recs[9] = FaceRecord(10, long_paths[0], long_paths, "cd" * 32, 9, 0, [0, 0, 1, 1], 0.9, "", "dlib-resnet-v1", recs[9].embedding)
    store.upsert("c_packed", recs)
    store.flush("c_packed")
    rows = {r["id"]: r[HIT_JSON] for r in store.query("c_packed", "id in [6, 10]", [HIT_JSON])}
    assert rows[6] == pack_hit(recs[5].image_path, recs[5].image_sha256, recs[5].image_phash, 3, recs[5].bbox, recs[5].identity, recs[5].image_paths)
    assert len(rows[10].encode()) < HIT_JSON_MAX_LEN and "image_paths" not in rows[10]
    hit = store.search("c_packed", recs[5].embedding[None], k=1, nprobe=4)[0][0]
    assert _fields(hit) == (6, recs[5].image_path, recs[5].image_paths, "ab" * 32, 2**62, 3, [1.2, 2.5, 30.8, 40.0], recs[5].identity)
    hits = store.search("c_packed", np.stack([recs[9].embedding, recs[5].embedding]), k=2, nprobe=4)
    assert (hits[0][0].id, hits[0][0].image_paths, hits[0][0].image_sha256) == (10, long_paths, "cd" * 32)
    assert hits[1][0].image_paths == recs[5].image_paths


def test_collections_made_before_hit_json_are_read_and_written_as_before(store: FaceStore):
    store.ensure_collection("c_new", 8, IndexSettings(nlist=4, nprobe=4))
    _legacy_collection(store, "c_new", "c_old")
    assert store.packs_hits("c_new") and not store.packs_hits("c_old")
    recs = records(80)
    for name in ("c_new", "c_old"):
        store.upsert(name, recs)  # the legacy collection refuses an unknown field: upsert leaves hit_json out
        store.flush(name)
    queries = np.stack([recs[i].embedding + 0.01 for i in (0, 9, 33)])
    new, old = (store.search(name, queries, k=5, nprobe=4) for name in ("c_new", "c_old"))
    assert [[_fields(h) for h in hits] for hits in new] == [[_fields(h) for h in hits] for hits in old]
    assert [h.distance for hits in new for h in hits] == pytest.approx([h.distance for hits in old for h in hits], abs=1e-5)
    assert new[0][0].id == recs[0].id


def test_an_alias_moved_to_the_other_schema_behind_the_store_still_reads_and_writes(store: FaceStore):
    """Another process promotes or rolls back: the alias now names a collection of the other schema."""
    store.ensure_collection("c_a_new", 8, IndexSettings(nlist=4, nprobe=4))
    _legacy_collection(store, "c_a_new", "c_a_old")
    recs = records(40)
    for name in ("c_a_new", "c_a_old"):
        store.upsert(name, recs[:30])
        store.flush(name)
        store.ensure_loaded(name)
    store.point_alias("c_alias", "c_a_new")
    query = recs[3].embedding[None]
    assert store.packs_hits("c_alias") and store.search("c_alias", query, k=1, nprobe=4)[0][0].id == recs[3].id
    store.client.alter_alias(collection_name="c_a_old", alias="c_alias")  # not through this store: its cache is stale
    assert store.search("c_alias", query, k=1, nprobe=4)[0][0].id == recs[3].id
    store.upsert("c_alias", recs[30:])
    store.client.alter_alias(collection_name="c_a_new", alias="c_alias")
    store.upsert("c_alias", recs[30:])  # the cache says legacy now: the new collection needs hit_json
    for name in ("c_a_new", "c_a_old"):
        store.flush(name)
        assert store.count(name) == 40
        assert _fields(store.search(name, recs[35].embedding[None], k=1, nprobe=4)[0][0]) == _fields(
            store.search("c_a_new", recs[35].embedding[None], k=1, nprobe=4)[0][0]
        )
