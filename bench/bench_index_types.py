"""Index types on the local Milvus 2.3.5 standalone: IVF_FLAT, IVF_SQ8, IVF_PQ, HNSW, DISKANN at each size.

Per size: synthetic face-like vectors (bench/vectors.py) inserted once through ``FaceStore.upsert``, then
for each index type FaceSearch's own build (``FaceStore.rebuild_index`` with the type's build params,
verified by describe_index, waited until every row is indexed) and the sweep's own measurement
(``facesearch.pipeline.sweep.measure``) over the type's search grid: recall@k against numpy exact
search on held-out queries, single-query p50/p95/p99, batched QPS. Memory per vector is the RSS delta
of the standalone's process tree between the collection released and loaded, divided by N (the
analytic index size is recorded beside it); disk per vector is the size of the index files the build
wrote. A type the server refuses is recorded as skipped. One MLflow run per (size, configuration) in the
experiment ``facesearch-index-bench`` (tracking URI from the settings).

    python bench/bench_index_types.py --sizes 100000 --out bench/results/index_types.json
    python bench/bench_index_types.py --sizes 1000000 --merge    # adds 1M to the file, keeps other sizes

These are the measured inputs of ``facesearch plan`` (src/facesearch/pipeline/capacity.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for p in (str(REPO / "src"), str(REPO)):  # this checkout's facesearch, not whatever the venv maps
    if p not in sys.path:
        sys.path.insert(0, p)

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from bench.bench_search import exact_top_k, face_records, loadavg, versions  # noqa: E402
from bench.procs import StandaloneServer  # noqa: E402

log = logging.getLogger("bench_index_types")
TYPES = ("IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "DISKANN")
EXPERIMENT = "facesearch-index-bench"
INTERIM_NLIST = 64


def nlist_for(n: int) -> int:
    """FaceSearch's sweep centre: the power of two at or below 4*sqrt(N)."""
    return 1 << int(math.floor(math.log2(4 * math.sqrt(n))))


def configs(n: int, dim: int, args: argparse.Namespace) -> list[tuple[str, dict[str, int], list[dict[str, int]]]]:
    nlist = nlist_for(n)
    nprobes = [{"nprobe": p} for p in args.nprobe_grid if p <= nlist]
    efs = sorted({max(e, args.k + 1) for e in args.ef_grid})
    m = dim // 4
    out = {
        "IVF_FLAT": ({"nlist": nlist}, nprobes),
        "IVF_SQ8": ({"nlist": nlist}, nprobes),
        "IVF_PQ": ({"nlist": nlist, "m": m, "nbits": 8}, nprobes),
        "HNSW": ({"M": args.hnsw_m, "efConstruction": args.ef_construction}, [{"ef": e} for e in efs]),
        "DISKANN": ({}, [{"search_list": e} for e in efs]),
    }
    return [(t, *out[t]) for t in args.types]


def index_file_bytes(base_dir: Path, since: float) -> int:
    """Bytes of the index files a build wrote under a standalone's local storage (``.../index_files/...``)
    since ``since`` (files of dropped indexes linger until the server's garbage collection)."""
    files = [f for f in base_dir.rglob("*") if f.is_file() and "index_files" in f.parts]
    return sum(f.stat().st_size for f in files if f.stat().st_mtime >= since)


def at_target(grid: list[dict[str, Any]], min_recall: float) -> dict[str, Any]:
    """The first (cheapest) search setting reaching ``min_recall``, else the one with the highest recall."""
    good = [g for g in grid if g["recall"] >= min_recall]
    return good[0] if good else max(grid, key=lambda g: g["recall"])


def settle(store: Any, name: str, n: int, timeout_s: float = 900) -> float:
    """Compact, then wait until the loaded segments are the persistent, indexed ones (stable twice)."""
    t0 = time.perf_counter()
    client = store.client
    store.wait_for_index(name)
    job = client.compact(name)
    while time.perf_counter() - t0 < timeout_s and client.get_compaction_state(job) != "Completed":
        time.sleep(0.5)
    store.wait_for_index(name)
    client.release_collection(name)  # the 2.3.5 query node took ~7 min to hand off compacted segments at 300k
    client.load_collection(name)
    stable, last = 0, None
    while time.perf_counter() - t0 < timeout_s and stable < 2:
        persistent = sorted((int(x.segment_id), int(x.num_rows)) for x in client.list_persistent_segments(name))
        loaded = sorted((int(x.segment_id), int(x.num_rows)) for x in client.list_loaded_segments(name))
        done = loaded == persistent and sum(r for _, r in loaded) >= n
        stable = stable + 1 if done and loaded == last else 0
        last = loaded
        time.sleep(1.0)
    return time.perf_counter() - t0


def run_size(n: int, gen: Any, args: argparse.Namespace, work: Path, on_run: Any) -> list[dict[str, Any]]:
    from facesearch.pipeline.sweep import loaded_index_bytes, measure
    from facesearch.settings import IndexSettings, MilvusSettings
    from facesearch.store import FaceStore
    from facesearch.store.indexes import analytic_bytes_per_vector

    data = gen.dataset(n, faces_per_identity=args.faces_per_identity, n_queries=args.queries)
    vectors, queries = data["vectors"], data["queries"]
    dim = vectors.shape[1]
    t0 = time.perf_counter()
    truth = [list(row) for row in exact_top_k(vectors, queries, args.k)]
    log.info("%d vectors: exact top-%d of %d queries in %.1f s", n, args.k, len(queries), time.perf_counter() - t0)
    server = StandaloneServer(work / f"milvus-{n}")
    runs: list[dict[str, Any]] = []
    try:
        server.start()
        settings = MilvusSettings(uri=server.uri, timeout_s=args.rpc_timeout_s, retries=0, insert_batch=args.insert_batch,
                                  index_build_timeout_s=args.build_timeout_s)
        name = "face_search__index_bench"
        with FaceStore(settings) as store:
            # the interim index only lets the segments settle (every measured type is rebuilt from scratch): a small
            # nlist keeps Milvus from spending the insert re-building nlist=2048 k-means on each sealed and compacted segment
            store.ensure_collection(name, dim, IndexSettings(nlist=INTERIM_NLIST, nprobe=1))
            t0 = time.perf_counter()
            for s in range(0, n, args.records_chunk):
                store.upsert(name, face_records(vectors, data["identity"], s, min(n, s + args.records_chunk)))
            store.client.flush(name)
            insert_s = time.perf_counter() - t0
            settle_s = settle(store, name, n)
            log.info("%d vectors inserted in %.1f s, settled in %.1f s", n, insert_s, settle_s)
            query_ids = np.full(len(queries), -1, dtype=np.int64)
            for index_type, build, grid in configs(n, dim, args):
                run: dict[str, Any] = {"size": n, "dim": dim, "index_type": index_type, "build_params": build, "insert_s": round(insert_s, 2),
                                       "index_bytes_per_vector": round(analytic_bytes_per_vector(index_type, dim, build), 1)}
                refusal = store.probe_index_type(index_type, build, dim, args.probe_timeout_s)
                t0, wall0 = time.perf_counter(), time.time()
                try:
                    if refusal:
                        raise RuntimeError(f"a 3000-row probe build failed: {refusal}")
                    store.rebuild_index(name, build.get("nlist"), index_type=index_type, build_params=build)
                except Exception as exc:  # noqa: BLE001 - a refused type is a result, not a crash
                    run["status"] = f"skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                    log.warning("%s at %d: %s", index_type, n, run["status"])
                    runs.append(run)
                    on_run(run)
                    continue
                run["build_s"] = round(time.perf_counter() - t0, 2)
                run["disk_bytes_per_vector"] = round(index_file_bytes(server.base_dir, wall0 - 1) / n, 1)
                run["bytes_per_vector"] = round(loaded_index_bytes(store, name, server.pid, queries[0]) / n, 1)
                try:  # the query node's own accounting of the loaded segments, beside the RSS delta
                    segments = store.client.list_loaded_segments(name)
                    run["segment_mem_bytes_per_vector"] = round(sum(int(x.mem_size) for x in segments) / n, 1)
                except Exception as exc:  # noqa: BLE001
                    log.info("list_loaded_segments: %s", exc)
                run["grid"] = []
                for params in grid:
                    measure(store, name, queries[: args.warmup], query_ids[: args.warmup], truth[: args.warmup], args.k, None, args.warmup, params)
                    recall, p50, p95, qps, p99 = measure(store, name, queries, query_ids, truth, args.k, None, args.latency_queries, params)
                    run["grid"].append({"search_params": params, "recall": round(recall, 4), "p50_ms": round(p50, 3), "p95_ms": round(p95, 3),
                                        "p99_ms": round(p99, 3), "batched_qps": round(qps, 1)})
                    log.info("%d %s %s %s: recall@%d %.4f p50 %.2f ms p99 %.2f ms batched %.0f qps", n, index_type, build, params,
                             args.k, recall, p50, p99, qps)
                run["at_target"] = at_target(run["grid"], args.min_recall)
                run["status"] = "ok"
                log.info("%d %s: build %.1f s, %.0f B/vector RSS (analytic %.0f), %.0f B/vector on disk", n, index_type, run["build_s"],
                         run["bytes_per_vector"], run["index_bytes_per_vector"], run["disk_bytes_per_vector"])
                runs.append(run)
                on_run(run)
            store.drop_collection(name)
    finally:
        server.stop()
    return runs


def log_mlflow(run: dict[str, Any], k: int) -> str | None:
    """One MLflow run per (size, configuration): params, metrics per search setting (step = its value)."""
    from mlflow.entities import Metric, Param

    from facesearch.pipeline.tracking import client_for, experiment_id
    from facesearch.settings import load_settings

    tracking = load_settings().tracking.model_copy(update={"experiment": EXPERIMENT})
    client = client_for(tracking)
    exp = experiment_id(client, tracking)
    label = " ".join([run["index_type"], *(f"{a}={b}" for a, b in run["build_params"].items())])
    created = client.create_run(exp, run_name=f"{label} N={run['size']}", tags={"index_type": run["index_type"], "status": run["status"]})
    rid = created.info.run_id
    now = int(time.time() * 1000)
    params = [Param("size", str(run["size"])), Param("dim", str(run["dim"])), Param("index_type", run["index_type"]),
              *(Param(a, str(b)) for a, b in run["build_params"].items())]
    metrics = []
    if run["status"] == "ok":
        for g in run["grid"]:
            step = int(next(iter(g["search_params"].values())))
            metrics += [Metric(f"recall_at_{k}", g["recall"], now, step), Metric("p50_ms", g["p50_ms"], now, step),
                        Metric("p99_ms", g["p99_ms"], now, step), Metric("batched_qps", g["batched_qps"], now, step)]
        metrics += [Metric(key, float(run[key]), now, 0) for key in ("build_s", "bytes_per_vector", "index_bytes_per_vector", "disk_bytes_per_vector")]
    client.log_batch(rid, metrics=metrics, params=params)
    client.set_terminated(rid, status="FINISHED" if run["status"] == "ok" else "KILLED")
    return str(rid)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=128, choices=[128, 512])
    ap.add_argument("--types", nargs="+", default=list(TYPES), choices=TYPES)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "index_types.json")
    ap.add_argument("--merge", action="store_true", help="keep the runs of other sizes already in --out")
    ap.add_argument("--nprobe-grid", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128])
    ap.add_argument("--ef-grid", type=int, nargs="+", default=[16, 32, 64, 128, 256], help="HNSW ef and DISKANN search_list")
    ap.add_argument("--hnsw-m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--min-recall", type=float, default=0.99, help="the at_target point of each type")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=500, help="held-out queries (also the batch of the batched QPS call)")
    ap.add_argument("--latency-queries", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--faces-per-identity", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--insert-batch", type=int, default=2000)
    ap.add_argument("--records-chunk", type=int, default=20_000)
    ap.add_argument("--rpc-timeout-s", type=float, default=600)
    ap.add_argument("--build-timeout-s", type=float, default=3600)
    ap.add_argument("--probe-timeout-s", type=float, default=180, help="each type is first built on 3000 rows; not built in this time = skipped")
    ap.add_argument("--no-mlflow", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from bench.vectors import FaceLikeVectors, fit

    previous = json.loads(args.out.read_text()) if args.merge and args.out.exists() else {}
    kept = [r for r in previous.get("runs", []) if r.get("size") not in args.sizes]
    out: dict[str, Any] = {
        "benchmark": "facesearch index types on Milvus 2.3.5 standalone (FaceStore.rebuild_index + facesearch.pipeline.sweep.measure)",
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/bench_index_types.py", *argv]),
        "machine": {"cpus": os.cpu_count(), "mem_gb": round(psutil.virtual_memory().total / 1024**3, 1), "platform": platform.platform(),
                    "loadavg_start": loadavg()},
        "versions": versions(),
        "config": {"k": args.k, "queries": args.queries, "latency_queries": args.latency_queries, "min_recall": args.min_recall,
                   "backend": "Milvus 2.3.5 standalone (facesearch.store.local_server.LocalMilvusServer)",
                   "memory": "RSS delta of the standalone's process tree, collection released -> loaded, / N",
                   "disk": "bytes of .../index_files/ under the standalone's local storage after the build, / N",
                   "queries_kind": "held-out faces of stored identities", "ground_truth": "numpy exact L2"},
        "earlier": previous.get("earlier", []) + ([{k: previous[k] for k in ("command", "created_utc", "machine") if k in previous}] if previous else []),
        "runs": kept,
    }
    report = fit(args.dim, seed=args.seed)
    out["vectors"] = report.as_dict()
    gen = FaceLikeVectors(report.params)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def on_run(run: dict[str, Any]) -> None:
        if not args.no_mlflow:
            run["mlflow_run_id"] = log_mlflow(run, args.k)
        out["runs"].append(run)
        out["machine"]["loadavg_end"] = loadavg()
        args.out.write_text(json.dumps(out, indent=2))

    work = Path(tempfile.mkdtemp(prefix="facesearch-index-bench-", dir=args.workdir))
    try:
        for n in args.sizes:
            run_size(n, gen, args, work, on_run)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for run in out["runs"]:
        point = run.get("at_target") or {}
        log.info("%8d %-8s %-40s recall %s p50 %s p99 %s qps %s B/vec %s build %s", run["size"], run["index_type"], run["status"][:40],
                 point.get("recall"), point.get("p50_ms"), point.get("p99_ms"), point.get("batched_qps"), run.get("bytes_per_vector"), run.get("build_s"))
    log.info("wrote %s (load average %s)", args.out, out["machine"]["loadavg_end"] if "loadavg_end" in out["machine"] else loadavg())
    return 0


if __name__ == "__main__":
    sys.exit(main())
