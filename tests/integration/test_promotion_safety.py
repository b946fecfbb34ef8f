"""Concurrent and retried re-index steps (issue 14.2, 14.3): retention, racing promotions, idempotent retries."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from facesearch.errors import FaceSearchError
from facesearch.pipeline.promote import apply_retention, promote
from facesearch.pipeline.sweep import SweepResult, Trial
from facesearch.store import FaceRecord, FaceStore
from facesearch.store.registry import CollectionRegistry, RegistryEntry
from tests.conftest import make_settings

pytestmark = pytest.mark.integration

ENCODER = "dlib-resnet-v1"
TRIAL = Trial(4, 4, 1.0, 1.0, 1.0, 100.0, 0.1)


def fill(store: FaceStore, settings, name: str, seed: int = 0, n: int = 40) -> str:
    """A small collection of random unit vectors (the rows do not matter here, the bookkeeping does)."""
    store.ensure_collection(name, 128, settings.index)
    vectors = np.random.default_rng(seed).normal(size=(n, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.upsert(
        name,
        [
            FaceRecord(
                id=i + 1,
                image_path=f"/p/{i}.jpg",
                image_paths=[f"/p/{i}.jpg"],
                image_sha256=f"{i:064x}",
                image_phash=0,
                face_index=0,
                bbox=[0, 0, 1, 1],
                det_prob=0.99,
                identity="",
                encoder=ENCODER,
                embedding=v,
            )
            for i, v in enumerate(vectors)
        ],
    )
    store.flush(name)
    return name


def registered(store: FaceStore, settings, suffix: str, seed: int = 0, **entry) -> str:
    name = fill(store, settings, store.collection_name(ENCODER, suffix), seed)
    CollectionRegistry(store).put(RegistryEntry(collection=name, encoder=ENCODER, dataset_version="d" * 32, **entry))
    return name


def test_retention_keeps_another_runs_loading_candidate_and_drops_finished_old_ones(settings, store):
    settings = settings.model_copy(update={"promotion": settings.promotion.model_copy(update={"keep_collections": 1})})
    hours_ago = time.time() - 3 * 3600  # a long load/sweep: the old one-hour guard had expired
    old = registered(store, settings, "aaaaaaaa__00000001", status="retired", created_at=hours_ago, promoted_at=hours_ago + 1)
    loading = registered(store, settings, "bbbbbbbb__00000002", status="loading", created_at=hours_ago)
    swept = registered(store, settings, "bbbbbbbb__00000003", status="candidate", created_at=hours_ago)
    dead = registered(store, settings, "cccccccc__00000004", status="loading", created_at=time.time() - 30 * 3600)
    serving = registered(store, settings, "dddddddd__00000005", status="candidate")
    mine = registered(store, settings, "eeeeeeee__00000006", status="candidate")
    store.point_alias(settings.milvus.alias, serving)

    promotion = promote(store, settings, mine, TRIAL, "test", run_id="run-mine")

    for survivor in (loading, swept, serving, mine):
        assert store.has_collection(survivor), f"retention dropped {survivor}"
    assert sorted(promotion.dropped) == sorted([old, dead])  # finished and old, and a candidate whose run died a day ago
    assert not store.has_collection(old) and not store.has_collection(dead)
    assert CollectionRegistry(store).get(loading).status == "loading"


def test_a_candidate_being_loaded_survives_another_runs_retention(tmp_path: Path, milvus_target, johns: Path):
    from facesearch.models.encoders import ENCODER_DIMS
    from facesearch.pipeline import steps
    from facesearch.pipeline.candidates import candidate_name, load_candidate

    settings = make_settings(
        tmp_path,
        milvus_target,
        milvus={"insert_batch": 2},
        paths={"embeddings_dir": str(tmp_path / "data" / "embeddings"), "reports_dir": str(tmp_path / "data" / "reports")},
        promotion={"keep_collections": 1},
    )
    images = Path(settings.paths.images_dir)
    for photo in sorted((johns / "John_Simm").glob("*.jpg"))[:3]:
        images.mkdir(parents=True, exist_ok=True)
        shutil.copy2(photo, images / photo.name)
    manifest = steps.build_manifest(settings)
    encoder = steps.embed_images(manifest, settings).encoder
    seen: list[tuple[bool, str]] = []
    with FaceStore(settings.milvus) as store:
        name = candidate_name(store, encoder, "f" * 32, "run-1")

        def other_run_retention(_: int) -> None:  # another run promotes while this one is mid-load
            apply_retention(store, settings, keep=set())
            entry = CollectionRegistry(store).get(name)
            seen.append((store.has_collection(name), entry.status if entry else "unregistered"))

        candidate = load_candidate(store, settings, manifest, encoder, ENCODER_DIMS[encoder], "f" * 32, "run-1", other_run_retention)
        assert candidate.collection == name
        assert len(seen) > 1 and set(seen) == {(True, "loading")}, f"mid-load (exists, registry status): {seen}"
        assert CollectionRegistry(store).get(name).status == "candidate"
        assert store.count(name) == candidate.faces > 0

        # a retried load of the same run resumes the same collection: no second one, same rows
        again = load_candidate(store, settings, manifest, encoder, ENCODER_DIMS[encoder], "f" * 32, "run-1")
        assert again.collection == name and store.count(name) == candidate.faces
        assert [c for c in store.list_collections() if c.startswith(store.collection_name(encoder))] == [name]
        other = load_candidate(store, settings, manifest, encoder, ENCODER_DIMS[encoder], "f" * 32, "run-2")
        assert other.collection != name


def test_two_racing_promotions_end_with_one_consistent_alias(settings, store):
    original = registered(store, settings, "00000000__0000000a", status="serving", promoted_at=time.time() - 60)
    store.point_alias(settings.milvus.alias, original)
    a = registered(store, settings, "aaaaaaaa__0000000b", seed=1)
    b = registered(store, settings, "bbbbbbbb__0000000c", seed=2)
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(name: str) -> None:
        with FaceStore(settings.milvus) as own:
            start.wait()
            try:
                promote(own, settings, name, TRIAL, "race", run_id=f"run-{name}")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    registry = CollectionRegistry(store)
    winner = store.alias_target(settings.milvus.alias)
    loser = ({a, b} - {winner}).pop()
    entries = {e.collection: e for e in registry.all()}
    assert [c for c, e in entries.items() if e.status == "serving"] == [winner]
    assert entries[winner].previous == loser, "the later promotion must record the earlier one as its previous"
    assert entries[loser].previous == original and entries[loser].status == "previous"
    assert entries[original].status == "previous"


def test_promote_retry_after_the_alias_moved_completes_the_bookkeeping(settings, store):
    from facesearch.pipeline.steps import promote_best
    from facesearch.pipeline.tracking import client_for, log_sweep

    settings = settings.model_copy(
        update={
            "tracking": settings.tracking.model_copy(
                update={"mlflow_uri": f"sqlite:///{Path(settings.paths.data_dir) / 'mlflow.db'}", "artifact_root": Path(settings.paths.data_dir) / "artifacts"}
            )
        }
    )
    serving = registered(store, settings, "00000000__0000000a", status="serving", promoted_at=time.time() - 60)
    store.point_alias(settings.milvus.alias, serving)
    candidate = registered(store, settings, "aaaaaaaa__0000000b", seed=1)
    result = SweepResult(candidate, 40, 128, 10, 10, [4], [4], [TRIAL])
    runs = log_sweep(settings.tracking, result, {"dataset_version": "d" * 32})
    child = runs.child_for(TRIAL)

    # the first attempt moved the alias, then died before MLflow was tagged
    promote(store, settings, candidate, TRIAL, "first attempt", run_id=child)
    client = client_for(settings.tracking)
    assert "promoted" not in client.get_run(child).data.tags

    promotion = promote_best(settings, candidate, result, runs)  # the task's retry
    assert promotion.collection == candidate and promotion.previous == serving
    assert store.alias_target(settings.milvus.alias) == candidate
    assert client.get_run(child).data.tags["promoted"] == "true"
    assert client.get_run(runs.parent_run_id).data.tags["promoted"] == "true"
    assert CollectionRegistry(store).get(serving).status == "previous"

    with pytest.raises(FaceSearchError, match="already serving"):  # a different promotion of it is still refused
        promote(store, settings, candidate, TRIAL, "another", run_id="some-other-run")


def test_a_candidate_still_loading_is_not_promoted(settings, store):
    serving = registered(store, settings, "00000000__0000000a", status="serving", promoted_at=time.time())
    store.point_alias(settings.milvus.alias, serving)
    loading = registered(store, settings, "aaaaaaaa__0000000b", status="loading")
    with pytest.raises(FaceSearchError, match="still loading"):
        promote(store, settings, loading, TRIAL, "test", run_id="r")
    assert store.alias_target(settings.milvus.alias) == serving
