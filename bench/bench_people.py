"""People clustering benchmark: ``cluster_people`` on synthetic faces in a fresh Milvus store.

Synthetic 128-d unit vectors: ``N / per_person`` people, each a random centre with faces spread so that
same-person distances sit around 0.6-0.9 and different people around 1.4 (SFace-like, threshold 1.04),
plus 10% loners (one face each). Reports seconds for a full clustering, an incremental one after 1% more
faces, the quality (BCubed F1 against the generating labels) and the peak RSS of this process.

    python bench/bench_people.py --faces 10000 100000 --out bench/results/people.json
    python bench/bench_people.py --faces 100000 --rule-only   # the rule alone, on neighbour lists from the labels
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

ENCODER = "sface-2021dec"


def synthetic(n: int, per_person: int, seed: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    loners = n // 10
    people = (n - loners) // per_person
    centres = rng.normal(size=(people + loners, 128)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    owner = np.concatenate([np.repeat(np.arange(people), per_person), people + np.arange(n - people * per_person)])
    vectors = centres[owner] + rng.normal(scale=0.045, size=(n, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), [str(o) for o in owner]


def records(vectors: np.ndarray, start: int) -> list[Any]:
    from facesearch.store import FaceRecord

    return [
        FaceRecord(
            id=start + i,
            image_path=f"/synthetic/{start + i}.jpg",
            image_paths=[f"/synthetic/{start + i}.jpg"],
            image_sha256=f"{start + i:064x}",
            image_phash=0,
            face_index=0,
            bbox=[0, 0, 1, 1],
            det_prob=1.0,
            identity="",
            encoder=ENCODER,
            embedding=v,
        )
        for i, v in enumerate(vectors)
    ]


def run(n: int, uri: str, per_person: int) -> dict[str, Any]:
    from facesearch.serve.people_cluster import cluster_people
    from facesearch.serve.people_eval import clustering_scores
    from facesearch.settings import load_settings
    from facesearch.store import FaceStore
    from facesearch.store.people_store import PeopleStore

    nlist = int(max(16, 4 * np.sqrt(n)))
    settings = load_settings(overrides={"milvus": {"uri": uri}, "index": {"nlist": nlist, "nprobe": 16}, "people": {"nprobe": 32}})
    vectors, labels = synthetic(n, per_person, seed=n)
    extra = max(1, n // 100)
    with FaceStore(settings.milvus) as store:
        name = store.collection_name(ENCODER)
        store.ensure_collection(name, 128, settings.index)
        store.upsert(name, records(vectors[:-extra], 0))
        store.flush(name)
        started = time.perf_counter()
        full = cluster_people(store, settings, name, full=True)
        full_s = time.perf_counter() - started
        store.upsert(name, records(vectors[-extra:], n - extra))
        store.flush(name)
        started = time.perf_counter()
        incremental = cluster_people(store, settings, name)
        incremental_s = time.perf_counter() - started
        assigned = PeopleStore(store).assignments()
    predicted = [str(assigned[i].person_id) if i in assigned else None for i in range(n)]
    scores = clustering_scores(labels, predicted)
    return {
        "faces": n,
        "nlist": nlist,
        "people_nprobe": 32,
        "full_s": round(full_s, 2),
        "incremental_s": round(incremental_s, 2),
        "incremental_faces": incremental["clustered"],
        "persons": full["persons"],
        "bcubed_f1": scores["bcubed_f1"],
        "merged": scores["merged"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def rule_only(n: int, per_person: int) -> dict[str, Any]:
    """The rule's own cost (graph, components, labels) on neighbour lists a search would return, without Milvus."""
    from facesearch.serve.people_cluster import apply_rule

    _, labels = synthetic(n, per_person, seed=n)
    members: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        members.setdefault(label, []).append(i)
    neighbours = [[(j, 0.7) for j in members[label][:16]] for label in labels]
    started = time.perf_counter()
    result = apply_rule(np.arange(n, dtype=np.int64), neighbours, 3, {}, {})
    return {
        "faces": n,
        "rule_only_s": round(time.perf_counter() - started, 2),
        "clusters": int(result.labels.max()) + 1,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--per-person", type=int, default=10)
    parser.add_argument("--uri", default="", help="Milvus URI (default: a fresh Milvus Lite file per size)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--rule-only", action="store_true", help="time the rule on synthetic neighbour lists, no Milvus")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = []
    for n in args.faces:
        if args.rule_only:
            results.append(rule_only(n, args.per_person))
            print(json.dumps(results[-1]), flush=True)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            result = run(n, args.uri or f"{tmp}/people.db", args.per_person)
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
