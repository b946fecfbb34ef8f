"""nlist x nprobe sweep of IVF_FLAT on a candidate collection: recall@k against exact search, latency, QPS.

Ground truth is exact L2 search in numpy over every stored vector. Queries are stored faces
(seeded sample); each query's own row is excluded from both the exact and the Milvus answers.
Every nlist is built for real (and read back with ``describe_index``) before it is measured.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from facesearch.settings import Settings, SweepSettings
from facesearch.store import FaceStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial:
    nlist: int
    nprobe: int
    recall: float
    p50_ms: float
    p95_ms: float
    batched_qps: float
    build_s: float


@dataclass
class SweepResult:
    collection: str
    n_vectors: int
    dim: int
    k: int
    n_queries: int
    nlist_grid: list[int]
    nprobe_grid: list[int]
    trials: list[Trial] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "trials"}, "trials": [asdict(t) for t in self.trials]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepResult:
        return cls(**{**data, "trials": [Trial(**t) for t in data["trials"]]})


def _pow2_floor(x: float) -> int:
    return 1 << max(0, int(math.floor(math.log2(max(x, 1)))))


def trainable_nlist(n_vectors: int, settings: SweepSettings) -> int:
    """The largest nlist IVF k-means can train on ``n_vectors`` rows (``min_points_per_list`` each)."""
    return max(1, n_vectors // settings.min_points_per_list)


def derive_nlist_grid(n_vectors: int, settings: SweepSettings) -> list[int]:
    """Powers of two around 4*sqrt(N) (/4 ... x4), capped so IVF k-means has points to train on."""
    if settings.nlist_grid:
        grid = sorted({int(n) for n in settings.nlist_grid})
    else:
        centre = _pow2_floor(4 * math.sqrt(max(n_vectors, 1)))
        grid = [max(1, centre // 4), max(1, centre // 2), centre, centre * 2, centre * 4]
    cap = min(settings.max_nlist, trainable_nlist(n_vectors, settings))
    capped = sorted({min(n, cap) for n in grid})
    if not settings.nlist_grid and len(capped) < 3:  # small collections: still compare three settings
        top = _pow2_floor(cap)
        capped = sorted({max(1, top // 4), max(1, top // 2), top})
    return capped


def nprobe_values(nlist: int, settings: SweepSettings) -> list[int]:
    values = sorted({p for p in settings.nprobe_grid if p <= nlist})
    return values or [nlist]


def exact_top_k(vectors: np.ndarray, ids: np.ndarray, query_rows: np.ndarray, k: int) -> list[list[int]]:
    """Exact L2 neighbours (ids) of the given rows, excluding the row itself."""
    sq = np.einsum("ij,ij->i", vectors, vectors)
    out = []
    for start in range(0, len(query_rows), 256):
        rows = query_rows[start : start + 256]
        d = sq[None, :] - 2.0 * vectors[rows] @ vectors.T + sq[rows, None]
        d[np.arange(len(rows)), rows] = np.inf
        top = np.argpartition(d, min(k, d.shape[1] - 1), axis=1)[:, :k]
        order = np.take_along_axis(d, top, axis=1).argsort(axis=1)
        out += [list(ids[t[o]]) for t, o in zip(top, order, strict=True)]
    return out


def fetch_vectors(store: FaceStore, collection: str) -> tuple[np.ndarray, np.ndarray]:
    ids, vecs = [], []
    for batch in store.iter_rows(collection, ["id", "embedding"], batch_size=2000):
        ids += [int(r["id"]) for r in batch]
        vecs += [r["embedding"] for r in batch]
    return np.asarray(ids, dtype=np.int64), np.asarray(vecs, dtype=np.float32)


def _recall(found: list[list[int]], truth: list[list[int]], k: int) -> float:
    return float(np.mean([len(set(f[:k]) & set(t)) / max(1, len(t)) for f, t in zip(found, truth, strict=True)]))


def measure(store: FaceStore, collection: str, queries: np.ndarray, query_ids: np.ndarray, truth: list[list[int]], k: int, nprobe: int, latency_queries: int) -> tuple[float, float, float, float]:
    """(recall@k, p50 ms, p95 ms, batched QPS) for one nprobe on the index currently built."""
    started = time.perf_counter()
    hits = store.search(collection, queries, k=k + 1, nprobe=nprobe)
    batched_qps = len(queries) / (time.perf_counter() - started)
    found = [[h.id for h in row if h.id != qid][:k] for row, qid in zip(hits, query_ids, strict=True)]
    latencies = []
    for q in queries[:latency_queries]:
        t0 = time.perf_counter()
        store.search(collection, q[None], k=k + 1, nprobe=nprobe)
        latencies.append((time.perf_counter() - t0) * 1000)
    return _recall(found, truth, k), float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95)), batched_qps


def run_sweep(store: FaceStore, collection: str, settings: Settings, on_trial: Callable[[Trial], None] | None = None) -> SweepResult:
    sweep = settings.sweep
    ids, vectors = fetch_vectors(store, collection)
    if len(ids) < 2:
        raise ValueError(f"collection {collection} holds {len(ids)} faces: nothing to sweep")
    k = min(sweep.k, len(ids) - 1)
    rng = np.random.default_rng(sweep.seed)
    rows = np.sort(rng.choice(len(ids), size=min(sweep.queries, len(ids)), replace=False))
    truth = exact_top_k(vectors, ids, rows, k)
    grid = derive_nlist_grid(len(ids), sweep)
    result = SweepResult(collection, len(ids), vectors.shape[1], k, len(rows), grid, sorted(set(sweep.nprobe_grid)))
    for nlist in grid:
        started = time.perf_counter()
        store.rebuild_index(collection, nlist)
        build_s = time.perf_counter() - started
        for nprobe in nprobe_values(nlist, sweep):
            recall, p50, p95, qps = measure(store, collection, vectors[rows], ids[rows], truth, k, nprobe, sweep.latency_queries)
            trial = Trial(nlist, nprobe, round(recall, 4), round(p50, 3), round(p95, 3), round(qps, 1), round(build_s, 3))
            log.info("nlist=%d nprobe=%d recall@%d=%.3f p50=%.1fms p95=%.1fms batched=%.0f qps", nlist, nprobe, k, recall, p50, p95, qps)
            result.trials.append(trial)
            if on_trial:
                on_trial(trial)
    return result


def choose_trial(trials: list[Trial], min_recall: float) -> tuple[Trial, str]:
    """Lowest p95 latency among trials with recall >= min_recall; else the highest recall."""
    good = [t for t in trials if t.recall >= min_recall]
    if good:
        best = min(good, key=lambda t: (t.p95_ms, -t.recall, t.nlist, t.nprobe))
        return best, f"lowest p95 latency ({best.p95_ms:.2f} ms) among {len(good)} configurations with recall@k >= {min_recall}"
    best = max(trials, key=lambda t: (t.recall, -t.p95_ms))
    return best, f"no configuration reached recall@k >= {min_recall}; highest recall ({best.recall:.4f}) chosen"
