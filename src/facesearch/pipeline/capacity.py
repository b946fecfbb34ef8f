"""Capacity model: from measured per-vector costs (bench/bench_index_types.py) to a Milvus cluster for N faces.

Scaling rules, per index type, from the measurements at the largest measured size ``n`` and dim ``d``:

- memory (the RSS delta, never below the analytic index size) and disk (index files): linear in N (a fixed part plus a per-vector slope when two or more sizes were
  measured, else the per-vector figure alone) and linear in dim (``D / d``);
- build time: ``fixed + slope x work`` with work = N x nlist for IVF_* and N log(segment) for the graphs
  (HNSW, DISKANN); Milvus builds every index per sealed segment (``segment_max_mb``), so nlist follows the
  segment's vectors (~4 sqrt): ~N^1.5 up to one segment, linear in N beyond; linear in dim; x bench cores /
  ``node_cores``;
- QPS of one query node on its slice of the data: the measured batched QPS at the cheapest search setting
  reaching the target recall, x ``node_cores / bench cores``, x ``d / D``, and for a slice of ``S`` vectors
  ``sqrt(n / S)`` for IVF_* (nlist grows with sqrt N) or ``log n / log S`` for graphs (HNSW, DISKANN).

A cluster: enough query nodes to hold the index (``node_memory_gb x memory_headroom`` each, and at most
``vectors_per_shard`` per shard); every query fans out to all of them, so QPS grows by replicas of that set.
Recall is the measured one (not extrapolated to N); the plan says so.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from facesearch.errors import ConfigError
from facesearch.settings import CapacitySettings

GIB = 2**30
GRAPH_TYPES = ("HNSW", "DISKANN")


@dataclass(frozen=True)
class Measured:
    """One index type's bench runs (sizes ascending)."""

    index_type: str
    dim: int
    cpus: int
    runs: list[dict[str, Any]]

    @property
    def largest(self) -> dict[str, Any]:
        return self.runs[-1]


@dataclass(frozen=True)
class TypePlan:
    index_type: str
    search_params: dict[str, int]
    recall: float
    memory_gb: float
    disk_gb: float
    build_hours_one_node: float
    build_hours_cluster: float
    shards: int
    query_nodes: int
    replicas: int
    qps_per_replica: float
    fits_recall: bool
    fits_qps: bool
    note: str

    @property
    def fits(self) -> bool:
        return self.fits_recall and self.fits_qps


def load_measurements(path: Path) -> list[Measured]:
    """The successful runs of a bench file, grouped by index type."""
    if not Path(path).exists():
        raise ConfigError(f"no index bench results at {path}: run `python bench/bench_index_types.py` first (or pass --from FILE)")
    doc = json.loads(Path(path).read_text())
    cpus = int(doc.get("machine", {}).get("cpus") or 1)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for run in doc.get("runs", []):
        if run.get("status") == "ok" and run.get("grid"):
            by_type.setdefault(run["index_type"], []).append(run)
    if not by_type:
        raise ConfigError(f"{path} holds no successful index bench runs")
    return [Measured(t, int(runs[0]["dim"]), cpus, sorted(runs, key=lambda r: r["size"])) for t, runs in by_type.items()]


def not_measured(path: Path) -> dict[str, str]:
    """Index types the bench could not build (the reason as recorded), unless another size measured them."""
    runs = json.loads(Path(path).read_text()).get("runs", [])
    ok = {r["index_type"] for r in runs if r.get("status") == "ok"}
    return {r["index_type"]: r.get("status", "") for r in runs if r.get("status") != "ok" and r["index_type"] not in ok}


def linear_fit(sizes: list[int], totals: list[float]) -> tuple[float, float]:
    """(fixed, per-vector) of ``total = fixed + per_vector x N``; one size: (0, total / N)."""
    if len(sizes) < 2:
        return 0.0, totals[0] / sizes[0]
    n_mean, t_mean = sum(sizes) / len(sizes), sum(totals) / len(totals)
    var = sum((n - n_mean) ** 2 for n in sizes)
    slope = sum((n - n_mean) * (t - t_mean) for n, t in zip(sizes, totals, strict=True)) / var
    if slope <= 0:  # noise at small sizes: fall back to the largest size's per-vector figure
        return 0.0, totals[-1] / sizes[-1]
    return max(0.0, t_mean - slope * n_mean), slope


def per_vector(run: dict[str, Any], key: str) -> float:
    """A run's measured bytes/vector. Memory is never taken below the analytic index size: an RSS delta under
    it means the server's allocator re-used pages it kept from the previous index (seen on the standalone)."""
    measured = float(run.get(key) or 0.0)
    return max(measured, float(run.get("index_bytes_per_vector") or 0.0)) if key == "bytes_per_vector" else measured


def predict_bytes(m: Measured, key: str, n: float, dim: int) -> float:
    sizes = [r["size"] for r in m.runs]
    fixed, slope = linear_fit(sizes, [per_vector(r, key) * r["size"] for r in m.runs])
    return (fixed + slope * n) * dim / m.dim


MILVUS_MAX_NLIST = 65536  # the largest nlist Milvus accepts


def planned_nlist(n: float) -> int:
    """The nlist an IVF index over ``n`` vectors is built with: the power of two at or below 4 sqrt(N) (the sweep's centre)."""
    return min(MILVUS_MAX_NLIST, 1 << max(0, math.floor(math.log2(4 * math.sqrt(max(n, 1))))))


def segment_rows(cfg: CapacitySettings, dim: int) -> int:
    """Vectors in one sealed Milvus segment (float32 vectors of ``dim``): the unit every index is built on."""
    return max(1, cfg.segment_max_mb * 2**20 // (4 * dim))


def build_work(index_type: str, n: float, nlist: int | None = None, segment: float | None = None) -> float:
    """What an index build's time grows with. IVF assigns N vectors to nlist centroids (N x nlist); nlist
    follows the vectors of one segment (~4 sqrt), so IVF builds cost ~N^1.5 up to a segment and N beyond.
    Graphs insert N vectors at log(segment) each."""
    per_segment = min(n, segment or n)
    if index_type in GRAPH_TYPES:
        return n * math.log(max(per_segment, 2))
    return n * (nlist or planned_nlist(per_segment))


def predict_build_s(m: Measured, n: float, dim: int, segment: float | None = None) -> float:
    """Build seconds on the bench machine for ``n`` vectors: ``fixed + slope x work`` fitted over the measured sizes
    (one size: proportional)."""
    work = [build_work(m.index_type, r["size"], (r.get("build_params") or {}).get("nlist")) for r in m.runs]
    fixed, slope = linear_fit([round(w) for w in work], [float(r["build_s"]) for r in m.runs])
    return (fixed + slope * build_work(m.index_type, n, segment=segment)) * dim / m.dim


def operating_point(m: Measured, recall: float) -> dict[str, Any]:
    """The cheapest measured search setting with recall >= target at the largest size, else the best recall."""
    grid = m.largest["grid"]
    good = [g for g in grid if g["recall"] >= recall]
    return max(good, key=lambda g: g["batched_qps"]) if good else max(grid, key=lambda g: (g["recall"], g["batched_qps"]))


def predict_qps(m: Measured, point: dict[str, Any], slice_n: float, dim: int, node_cores: int) -> float:
    n0 = m.largest["size"]
    if m.index_type in GRAPH_TYPES:
        size_factor = math.log(n0) / math.log(max(slice_n, 2))
    else:
        size_factor = math.sqrt(n0 / max(slice_n, 1))
    return float(point["batched_qps"]) * node_cores / m.cpus * m.dim / dim * size_factor


def plan_type(m: Measured, faces: float, dim: int, qps: float, recall: float, cfg: CapacitySettings) -> TypePlan:
    memory = predict_bytes(m, "bytes_per_vector", faces, dim)
    disk = predict_bytes(m, "disk_bytes_per_vector", faces, dim) + (4.0 * dim * faces if cfg.raw_vectors_on_disk else 0.0)
    if m.index_type == "DISKANN":  # the graph and full vectors live on the query nodes' local disk, PQ codes in RAM
        disk += 4.0 * dim * faces
    node_bytes = cfg.node_memory_gb * cfg.memory_headroom * GIB
    shards = max(math.ceil(memory / node_bytes), math.ceil(faces / cfg.vectors_per_shard), 1)
    point = operating_point(m, recall)
    per_replica = predict_qps(m, point, faces / shards, dim, cfg.node_cores)
    replicas = max(1, math.ceil(qps / per_replica)) if per_replica > 0 else 10**9
    query_nodes = shards * replicas
    # bench-machine seconds, on a node of node_cores (k-means assignment and graph inserts use every core)
    build_s = predict_build_s(m, faces, dim, segment_rows(cfg, dim)) * m.cpus / cfg.node_cores
    return TypePlan(
        index_type=m.index_type,
        search_params=dict(point["search_params"]),
        recall=float(point["recall"]),
        memory_gb=round(memory / GIB, 2),
        disk_gb=round(disk / GIB, 2),
        build_hours_one_node=round(build_s / 3600, 2),
        build_hours_cluster=round(build_s / 3600 / shards, 2),
        shards=shards,
        query_nodes=query_nodes,
        replicas=replicas,
        qps_per_replica=round(per_replica, 1),
        fits_recall=float(point["recall"]) >= recall,
        fits_qps=query_nodes <= cfg.max_query_nodes,
        note=f"recall measured at {m.largest['size']} vectors, {m.dim}-d (not extrapolated)",
    )


def capacity_plan(faces: float, dim: int, qps: float, recall: float, cfg: CapacitySettings, source: Path | None = None) -> dict[str, Any]:
    """The plan for every measured index type, as a JSON-ready document."""
    if faces < 1 or dim < 1 or qps <= 0 or not 0 < recall <= 1:
        raise ConfigError(f"plan needs faces >= 1, dim >= 1, qps > 0 and 0 < recall <= 1 (got {faces}, {dim}, {qps}, {recall})")
    path = Path(source or cfg.bench_file)
    measured = load_measurements(path)
    plans = [plan_type(m, faces, dim, qps, recall, cfg) for m in measured]
    sizes = sorted({r["size"] for m in measured for r in m.runs})
    check = {"from": sizes[0], "to": sizes[-1], "relative_errors": prediction_errors(path, sizes[0], sizes[-1])} if len(sizes) > 1 else None
    return {
        "faces": int(faces),
        "dim": dim,
        "qps": qps,
        "recall": recall,
        "source": str(path),
        "measured": {m.index_type: {"sizes": [r["size"] for r in m.runs], "dim": m.dim, "bench_cpus": m.cpus} for m in measured},
        "assumptions": cfg.model_dump(mode="json"),
        "types": [{**asdict(p), "fits": p.fits} for p in plans],
        "fitting": [p.index_type for p in plans if p.fits],
        "not_measured": not_measured(path),
        "check": check,  # the model fed the smallest size only, predicting the largest measured one
    }


def prediction_errors(bench: Path, small: int, large: int) -> dict[str, dict[str, float]]:
    """Relative error of predicting ``large`` from the runs at ``small`` only: memory, disk, build time, QPS."""
    out: dict[str, dict[str, float]] = {}
    for m in load_measurements(bench):
        at = {r["size"]: r for r in m.runs}
        if small not in at or large not in at:
            continue
        base = Measured(m.index_type, m.dim, m.cpus, [at[small]])
        truth = at[large]
        errors: dict[str, float] = {}
        for key in ("bytes_per_vector", "disk_bytes_per_vector"):
            if per_vector(truth, key):
                errors[key] = predict_bytes(base, key, large, m.dim) / large / per_vector(truth, key) - 1
        errors["build_s"] = predict_build_s(base, large, m.dim) / truth["build_s"] - 1
        same = {json.dumps(g["search_params"]): g for g in truth["grid"]}
        pairs = [(g, same[json.dumps(g["search_params"])]) for g in at[small]["grid"] if json.dumps(g["search_params"]) in same]
        if pairs:
            g, t = pairs[len(pairs) // 2]
            errors["batched_qps"] = predict_qps(base, g, large, m.dim, m.cpus) / t["batched_qps"] - 1
        out[m.index_type] = {k: round(v, 4) for k, v in errors.items()}
    return out
