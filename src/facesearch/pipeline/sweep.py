"""Index sweep on a candidate collection: recall@k against exact search, latency, QPS, build time, memory.

IVF_FLAT is swept over nlist x nprobe; collections of ``sweep.large_index_types_from`` vectors or more
also sweep IVF_SQ8 and IVF_PQ (nlist x nprobe), HNSW (ef) and DISKANN (search_list). A type the backend
refuses (Milvus Lite has no IVF_PQ or DISKANN) is skipped with the reason logged and recorded.
Ground truth is exact L2 search in numpy over every stored vector. Queries are stored faces
(seeded sample); each query's own row is excluded from both the exact and the Milvus answers.
Every configuration is built for real (and read back with ``describe_index``) before it is measured.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facesearch.settings import Settings, SweepSettings
from facesearch.store import FaceStore
from facesearch.store.indexes import SEARCH_PARAM, analytic_bytes_per_vector
from facesearch.store.local_server import STATE_FILE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial:
    """One measured (index type, build params, search params); ``nlist``/``nprobe`` are 0 for non-IVF types."""

    nlist: int
    nprobe: int
    recall: float
    p50_ms: float
    p95_ms: float
    batched_qps: float
    build_s: float
    index_type: str = "IVF_FLAT"
    build_params: dict[str, int] = field(default_factory=dict)
    search_params: dict[str, int] = field(default_factory=dict)
    p99_ms: float = 0.0
    bytes_per_vector: float = 0.0  # measured: RSS delta (released -> loaded) of the process holding the index / N
    index_bytes_per_vector: float = 0.0  # analytic, from the index layout (for comparison)

    @property
    def build(self) -> dict[str, int]:
        return self.build_params or {"nlist": self.nlist}

    @property
    def search(self) -> dict[str, int]:
        return self.search_params or {"nprobe": self.nprobe}

    @property
    def config_key(self) -> str:
        """One name per built index: ``IVF_FLAT nlist=128``, ``HNSW M=16 efConstruction=200``."""
        return " ".join([self.index_type, *(f"{k}={v}" for k, v in self.build.items())])

    def memory_bytes(self, n_vectors: int) -> float:
        """Index memory for ``n_vectors``: the measured bytes/vector, else the analytic one."""
        return (self.bytes_per_vector or self.index_bytes_per_vector) * n_vectors


@dataclass(frozen=True)
class IndexConfig:
    index_type: str
    build_params: dict[str, int]
    search_values: list[int]

    @property
    def search_key(self) -> str:
        return SEARCH_PARAM[self.index_type]


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
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {"index_type", "build_params", "reason"}

    def as_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in asdict(self).items() if k != "trials"}, "trials": [asdict(t) for t in self.trials]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepResult:
        return cls(**{**data, "trials": [Trial(**t) for t in data["trials"]]})

    @property
    def index_types(self) -> list[str]:
        return list(dict.fromkeys(t.index_type for t in self.trials))


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


def ef_values(grid: tuple[int, ...] | list[int], k: int) -> list[int]:
    """HNSW ef / DISKANN search_list must be >= the limit asked for (k + 1: the query's own row)."""
    return sorted({max(int(v), k + 1) for v in grid})


def pq_m(dim: int, settings: SweepSettings) -> int:
    """IVF_PQ sub-quantizers: ``sweep.pq_m``, else dim/4, lowered to a divisor of dim."""
    m = settings.pq_m or max(1, dim // 4)
    while dim % m:
        m -= 1
    return m


def index_configs(n_vectors: int, dim: int, k: int, settings: SweepSettings) -> list[IndexConfig]:
    """What to build, in order: IVF_FLAT only below ``large_index_types_from`` vectors."""
    types = settings.index_types if n_vectors >= settings.large_index_types_from else ("IVF_FLAT",)
    nlists = derive_nlist_grid(n_vectors, settings)
    out = []
    for index_type in dict.fromkeys(types):
        if index_type in ("IVF_FLAT", "IVF_SQ8"):
            out += [IndexConfig(index_type, {"nlist": n}, nprobe_values(n, settings)) for n in nlists]
        elif index_type == "IVF_PQ":
            m = pq_m(dim, settings)
            out += [IndexConfig(index_type, {"nlist": n, "m": m, "nbits": settings.pq_nbits}, nprobe_values(n, settings)) for n in nlists]
        elif index_type == "HNSW":
            build = {"M": settings.hnsw_m, "efConstruction": settings.hnsw_ef_construction}
            out.append(IndexConfig(index_type, build, ef_values(settings.hnsw_ef_grid, k)))
        elif index_type == "DISKANN":
            out.append(IndexConfig(index_type, {}, ef_values(settings.diskann_search_list_grid, k)))
    return out


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its children (a Milvus standalone is a process tree)."""
    import psutil

    proc = psutil.Process(pid)
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def memory_pid(settings: Settings) -> int | None:
    """The process holding the index: this one for Milvus Lite, the local standalone when its state file names it."""
    if settings.milvus.is_local_lite:
        return os.getpid()
    state = Path(settings.milvus.server_dir) / STATE_FILE
    try:
        data = json.loads(state.read_text())
        port = int(data["port"])
    except (OSError, ValueError, KeyError):
        return None
    return int(data["pid"]) if settings.milvus.uri.rstrip("/").endswith(f":{port}") else None


def _trim(pid: int) -> None:
    """In-process (Milvus Lite): hand freed heap back to the OS, or RSS would not drop on release (glibc keeps it)."""
    gc.collect()
    if pid == os.getpid():
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def settled_rss(pid: int, max_wait_s: float = 30.0) -> int:
    """RSS once it stops moving (< 0.5% over 3 s): a server's allocator hands freed pages back over seconds."""
    _trim(pid)
    if pid == os.getpid():
        return rss_bytes(pid)
    readings = [rss_bytes(pid)]
    deadline = time.monotonic() + max_wait_s
    while time.monotonic() < deadline:
        time.sleep(1.0)
        readings.append(rss_bytes(pid))
        recent = readings[-4:]
        if len(recent) == 4 and max(recent) - min(recent) <= 0.005 * max(recent):
            break
    return readings[-1]


def loaded_index_bytes(store: FaceStore, collection: str, pid: int | None, probe: np.ndarray | None = None) -> int:
    """RSS(loaded) - RSS(released) of ``pid``, each once settled; 0 when the process is not known. Leaves it loaded.

    ``probe`` (one query vector) is searched after the load: Milvus Lite reads index files on first use.
    """
    if pid is None:
        return 0
    store.release(collection)
    released = settled_rss(pid)
    store.ensure_loaded(collection)
    if probe is not None:
        store.search(collection, probe[None], k=1, search_params={})
    return max(0, settled_rss(pid) - released)


def fetch_vectors(store: FaceStore, collection: str) -> tuple[np.ndarray, np.ndarray]:
    ids, vecs = [], []
    for batch in store.iter_rows(collection, ["id", "embedding"], batch_size=2000):
        ids += [int(r["id"]) for r in batch]
        vecs += [r["embedding"] for r in batch]
    return np.asarray(ids, dtype=np.int64), np.asarray(vecs, dtype=np.float32)


def _recall(found: list[list[int]], truth: list[list[int]], k: int) -> float:
    return float(np.mean([len(set(f[:k]) & set(t)) / max(1, len(t)) for f, t in zip(found, truth, strict=True)]))


def measure(
    store: FaceStore, collection: str, queries: np.ndarray, query_ids: np.ndarray, truth: list[list[int]], k: int,
    nprobe: int | None, latency_queries: int, search_params: dict[str, int] | None = None,
) -> tuple[float, float, float, float, float]:
    """(recall@k, p50 ms, p95 ms, batched QPS, p99 ms) for one search setting on the index currently built."""
    started = time.perf_counter()
    hits = store.search(collection, queries, k=k + 1, nprobe=nprobe, search_params=search_params)
    batched_qps = len(queries) / (time.perf_counter() - started)
    found = [[h.id for h in row if h.id != qid][:k] for row, qid in zip(hits, query_ids, strict=True)]
    latencies = []
    for q in queries[:latency_queries]:
        t0 = time.perf_counter()
        store.search(collection, q[None], k=k + 1, nprobe=nprobe, search_params=search_params)
        latencies.append((time.perf_counter() - t0) * 1000)
    p50, p95, p99 = (float(np.percentile(latencies, q)) for q in (50, 95, 99))
    return _recall(found, truth, k), p50, p95, batched_qps, p99


def _build(store: FaceStore, collection: str, config: IndexConfig, dim: int, probe_timeout_s: float) -> tuple[float, str]:
    """(build seconds, "") or (0, why the backend refused this index type: probed first on 3000 rows)."""
    if config.index_type != "IVF_FLAT" and (refusal := store.probe_index_type(config.index_type, config.build_params, dim, probe_timeout_s)):
        return 0.0, refusal
    started = time.perf_counter()
    try:
        store.rebuild_index(collection, config.build_params.get("nlist"), index_type=config.index_type, build_params=config.build_params)
    except Exception as exc:  # the backend refuses the type (Lite: NotImplementedError / unknown type): skip, never crash
        if config.index_type == "IVF_FLAT":
            raise
        return 0.0, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
    return time.perf_counter() - started, ""


def run_sweep(
    store: FaceStore, collection: str, settings: Settings, on_trial: Callable[[Trial], None] | None = None, pid: int | None = None,
) -> SweepResult:
    """Build and measure every configuration; ``pid`` holds the index (default: :func:`memory_pid`)."""
    sweep = settings.sweep
    ids, vectors = fetch_vectors(store, collection)
    if len(ids) < 2:
        raise ValueError(f"collection {collection} holds {len(ids)} faces: nothing to sweep")
    k = min(sweep.k, len(ids) - 1)
    rng = np.random.default_rng(sweep.seed)
    rows = np.sort(rng.choice(len(ids), size=min(sweep.queries, len(ids)), replace=False))
    truth = exact_top_k(vectors, ids, rows, k)
    n, dim = len(ids), vectors.shape[1]
    pid = pid if pid is not None else memory_pid(settings)
    configs = index_configs(n, dim, k, sweep)
    grid = sorted({c.build_params["nlist"] for c in configs if c.index_type == "IVF_FLAT"})
    result = SweepResult(collection, n, dim, k, len(rows), grid, sorted(set(sweep.nprobe_grid)))
    refused: set[str] = set()
    for config in configs:
        if config.index_type in refused:
            continue
        build_s, refusal = _build(store, collection, config, dim, sweep.probe_timeout_s)
        if refusal:
            refused.add(config.index_type)
            log.warning("skipping %s: the backend refused it (%s)", config.index_type, refusal)
            result.skipped.append({"index_type": config.index_type, "build_params": config.build_params, "reason": refusal})
            continue
        measured = loaded_index_bytes(store, collection, pid, vectors[0]) / n
        analytic = analytic_bytes_per_vector(config.index_type, dim, config.build_params)
        for value in config.search_values:
            params = {config.search_key: value}
            recall, p50, p95, qps, p99 = measure(store, collection, vectors[rows], ids[rows], truth, k, None, sweep.latency_queries, params)
            ivf = config.search_key == "nprobe"
            trial = Trial(
                config.build_params.get("nlist", 0) if ivf else 0, value if ivf else 0, round(recall, 4), round(p50, 3), round(p95, 3),
                round(qps, 1), round(build_s, 3), config.index_type, dict(config.build_params), params, round(p99, 3),
                round(measured, 1), round(analytic, 1),
            )
            log.debug("%s %s recall@%d=%.3f p50=%.1fms p99=%.1fms batched=%.0f qps %.0f B/vector",
                     trial.config_key, params, k, recall, p50, p99, qps, measured)
            result.trials.append(trial)
            if on_trial:
                on_trial(trial)
    return result


def choose_trial(
    trials: list[Trial], min_recall: float, max_memory_gb: float | None = None, n_vectors: int = 0,
    rule: str = "lowest_p95_with_min_recall",
) -> tuple[Trial, str]:
    """Lowest p95 (or p99) latency among trials with recall >= min_recall whose memory fits; else the highest recall."""
    pct = "p99" if rule == "lowest_p99_with_min_recall" else "p95"
    latency = (lambda t: t.p99_ms or t.p95_ms) if pct == "p99" else (lambda t: t.p95_ms)
    pool, note = trials, ""
    if max_memory_gb is not None:
        budget = max_memory_gb * 2**30
        pool = [t for t in trials if t.memory_bytes(n_vectors) <= budget]
        note = f" within {max_memory_gb:g} GB for {n_vectors} vectors"
        if not pool:
            smallest = min(t.memory_bytes(n_vectors) for t in trials)
            pool = [t for t in trials if t.memory_bytes(n_vectors) == smallest]
            note = f"; no configuration fits {max_memory_gb:g} GB for {n_vectors} vectors, the smallest ({smallest / 2**30:.3f} GB) considered"
    good = [t for t in pool if t.recall >= min_recall]
    if good:
        best = min(good, key=lambda t: (latency(t), -t.recall, t.nlist, t.nprobe))
        return best, f"lowest {pct} latency ({latency(best):.2f} ms) among {len(good)} configurations with recall@k >= {min_recall}{note}"
    best = max(pool, key=lambda t: (t.recall, -latency(t)))
    return best, f"no configuration reached recall@k >= {min_recall}{note}; highest recall ({best.recall:.4f}) chosen"


def choose_for(result: SweepResult, settings: Settings) -> tuple[Trial, str]:
    """:func:`choose_trial` with the promotion settings (rule, min recall, memory budget)."""
    p = settings.promotion
    return choose_trial(result.trials, p.min_recall, p.max_memory_gb, result.n_vectors, p.rule)
