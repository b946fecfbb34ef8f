"""Where does one ``FaceStore.search`` call go in Milvus Lite 3.2.2 (in-process)?

milvus-lite 3.2.2 runs a gRPC server in threads of the calling process, so one search is:
FaceStore.search -> pymilvus (build the request, encode the float vectors) -> gRPC (serialise, loopback
HTTP/2, thread hand-off) -> MilvusServicer.Search (decode, call the engine, encode the result) ->
Collection.search -> execute_search_with_index (dedup/masks over every stored row, per-segment faiss
search, merge, materialise the hits) -> back.

Two passes over the same single-vector queries on a collection of N synthetic vectors (IVF_FLAT, L2):

1. timers only (``time.perf_counter`` wrappers around each layer; small overhead): the per-layer breakdown;
2. cProfile: one profiler in the client thread and one per call inside the server handler thread (cProfile
   only sees the thread it is enabled in), merged; the top functions by self time, as % of the
   per-call total.

The process caps its own address space (RLIMIT_AS, --as-limit-gb) so a Lite blow-up fails with MemoryError.

    python bench/profile_lite.py --size 100000 --dim 128 --out bench/results/profile_lite.json
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import json
import pstats
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for p in (str(REPO / "src"), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)

import numpy as np  # noqa: E402

from bench.bench_search import CAVEAT, exact_top_k, face_records, nlist_for, recall_at_k  # noqa: E402

TIMERS: dict[str, list[float]] = defaultdict(list)
_local = threading.local()


def timed(name: str, fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            if getattr(_local, "on", True):
                TIMERS[name].append(time.perf_counter() - t0)

    wrapper.__wrapped_original__ = fn  # type: ignore[attr-defined]
    return wrapper


class ServerProfiler:
    """Wraps MilvusServicer.Search so each call runs under its own cProfile in the server thread."""

    def __init__(self) -> None:
        self.enabled = False
        self.stats: pstats.Stats | None = None
        self._lock = threading.Lock()

    def wrap(self, fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not self.enabled:
                return fn(*args, **kwargs)
            prof = cProfile.Profile()
            prof.enable()
            try:
                return fn(*args, **kwargs)
            finally:
                prof.disable()
                with self._lock:
                    if self.stats is None:
                        self.stats = pstats.Stats(prof)
                    else:
                        self.stats.add(prof)

        return wrapper


def top_functions(stats: pstats.Stats, per_call_total_s: float, calls: int, limit: int = 20) -> list[dict[str, Any]]:
    rows = []
    for (file, line, func), (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = file.split("site-packages/")[-1].split("/src/")[-1]
        rows.append(
            {
                "function": f"{short}:{line}({func})",
                "self_ms_per_search": round(tt / calls * 1000, 3),
                "cum_ms_per_search": round(ct / calls * 1000, 3),
                "self_pct_of_call": round(100 * tt / calls / per_call_total_s, 1),
                "cum_pct_of_call": round(100 * ct / calls / per_call_total_s, 1),
                "ncalls_per_search": round(nc / calls, 1),
            }
        )
    rows.sort(key=lambda r: -r["self_ms_per_search"])
    return rows[:limit]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128, choices=[128, 512])
    ap.add_argument("--nlist", type=int, default=None, help="default: power of two at or below 4*sqrt(N)")
    ap.add_argument("--nprobe", type=int, default=4, help="the bench's choice for recall@10 >= 0.99 at 100k x 128")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--as-limit-gb", type=float, default=8.0)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "profile_lite.json")
    args = ap.parse_args(argv)
    if args.as_limit_gb:
        lim = int(args.as_limit_gb * 1024**3)
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))

    import faiss
    import milvus_lite.engine.collection as lite_collection
    import milvus_lite.index.faiss_ivf_flat as lite_ivf
    from milvus_lite.adapter.grpc import servicer as lite_servicer

    from bench.vectors import FaceLikeVectors, fit
    from facesearch.settings import IndexSettings, MilvusSettings
    from facesearch.store import FaceStore

    report = fit(args.dim, seed=args.seed)
    ds = FaceLikeVectors(report.params).dataset(args.size, n_queries=max(args.calls, 200))
    nlist = args.nlist or nlist_for(args.size)
    truth = exact_top_k(ds["vectors"], ds["queries"], args.k)

    # Instrument the layers (class attributes, before the in-process server starts).
    server_prof = ServerProfiler()
    lite_servicer.MilvusServicer.Search = server_prof.wrap(timed("server: MilvusServicer.Search (handler)", lite_servicer.MilvusServicer.Search))
    lite_collection.Collection.search = timed("server: Collection.search (engine)", lite_collection.Collection.search)
    lite_collection.execute_search_with_index = timed("server: execute_search_with_index", lite_collection.execute_search_with_index)
    lite_ivf.FaissIvfFlatIndex.search = timed("server: FaissIvfFlatIndex.search (faiss + per-hit python loop)", lite_ivf.FaissIvfFlatIndex.search)
    faiss.IndexIVFFlat.search = timed("server: faiss IndexIVFFlat.search (C++)", faiss.IndexIVFFlat.search)

    work = Path(tempfile.mkdtemp(prefix="facesearch-profile-"))
    out: dict[str, Any] = {"caveat": CAVEAT, "size": args.size, "dim": args.dim, "nlist": nlist, "nprobe": args.nprobe, "calls": args.calls, "vectors": report.as_dict()}
    try:
        store = FaceStore(MilvusSettings(uri=str(work / "profile.db"), timeout_s=300, retries=0))
        name = "face_search__profile"
        try:
            store.ensure_collection(name, args.dim, IndexSettings(nlist=nlist, nprobe=min(nlist, 16)))
            t0 = time.perf_counter()
            for s in range(0, args.size, 10_000):
                store.upsert(name, face_records(ds["vectors"], ds["identity"], s, min(args.size, s + 10_000)))
            store.client.flush(name)
            out["insert_s"] = round(time.perf_counter() - t0, 2)
            t0 = time.perf_counter()
            store.rebuild_index(name, nlist)
            out["index_build_s"] = round(time.perf_counter() - t0, 2)
            hits = store.search(name, ds["queries"], k=args.k, nprobe=args.nprobe)
            out["recall_at_k"] = round(recall_at_k([[h.id for h in row] for row in hits], truth, args.k), 4)

            # the client's gRPC stub call: everything between pymilvus and the server handler
            handler = store.client._get_connection()
            handler._stub.Search = timed("client: gRPC stub Search (round trip)", handler._stub.Search)
            search = timed("client: FaceStore.search (total)", store.search)
            q = ds["queries"]
            for i in range(20):  # warm-up
                search(name, q[i : i + 1], k=args.k, nprobe=args.nprobe)
            TIMERS.clear()

            # pass 1: timers only
            for i in range(args.calls):
                search(name, q[i % len(q) : i % len(q) + 1], k=args.k, nprobe=args.nprobe)
            med = {k: float(np.median(v)) for k, v in TIMERS.items()}
            mean = {k: float(np.mean(v)) for k, v in TIMERS.items()}
            total = mean["client: FaceStore.search (total)"]
            rpc = mean["client: gRPC stub Search (round trip)"]
            handler_s = mean["server: MilvusServicer.Search (handler)"]
            engine = mean["server: Collection.search (engine)"]
            execute = mean["server: execute_search_with_index"]
            ivf = mean["server: FaissIvfFlatIndex.search (faiss + per-hit python loop)"]
            cxx = mean["server: faiss IndexIVFFlat.search (C++)"]
            layers = {
                "client side: FaceStore + pymilvus request build (vectors -> list -> protobuf) and result parsing": total - rpc,
                "gRPC transport: serialise, loopback HTTP/2, thread hand-off (round trip - handler)": rpc - handler_s,
                "server handler outside the engine: request decode, output-field encoding into protobuf": handler_s - engine,
                "engine outside execute_search_with_index: filter/projection setup, distance conversion": engine - execute,
                "execute_search_with_index outside the index: dedup map + valid masks over every row, merge, hit materialisation": execute - ivf,
                "FaissIvfFlatIndex.search wrapper (python per-hit loop)": ivf - cxx,
                "faiss IndexIVFFlat.search itself (C++)": cxx,
            }
            out["per_call_mean_ms"] = round(total * 1000, 3)
            out["per_call_median_ms"] = round(med["client: FaceStore.search (total)"] * 1000, 3)
            out["layers"] = [{"layer": k, "ms": round(v * 1000, 3), "pct": round(100 * v / total, 1)} for k, v in layers.items()]
            out["timers_mean_ms"] = {k: round(v * 1000, 3) for k, v in mean.items()}

            # pass 2: cProfile, client thread + server handler threads
            server_prof.enabled = True
            client_prof = cProfile.Profile()
            t0 = time.perf_counter()
            client_prof.enable()
            for i in range(args.calls):
                store.search(name, q[i % len(q) : i % len(q) + 1], k=args.k, nprobe=args.nprobe)
            client_prof.disable()
            profiled_total = (time.perf_counter() - t0) / args.calls
            server_prof.enabled = False
            out["profiled_per_call_ms"] = round(profiled_total * 1000, 3)
            assert server_prof.stats is not None
            out["server_top_self_time"] = top_functions(server_prof.stats, profiled_total, args.calls)
            out["client_top_self_time"] = top_functions(pstats.Stats(client_prof), profiled_total, args.calls)
            buf = io.StringIO()
            server_prof.stats.stream = buf  # type: ignore[attr-defined]
            server_prof.stats.sort_stats("cumulative").print_stats(25)
            out["server_cumulative_text"] = buf.getvalue()[-6000:]
        finally:
            store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    print(f"Milvus Lite 3.2.2 in-process, N={args.size} dim={args.dim} nlist={nlist} nprobe={args.nprobe}, recall@{args.k}={out['recall_at_k']}")
    print(f"one FaceStore.search: mean {out['per_call_mean_ms']} ms, median {out['per_call_median_ms']} ms ({args.calls} calls)\n")
    for row in out["layers"]:
        print(f"  {row['pct']:5.1f}%  {row['ms']:8.3f} ms  {row['layer']}")
    print(f"\nserver thread, top self time (cProfile; per call {out['profiled_per_call_ms']} ms with profiling on):")
    for row in out["server_top_self_time"][:12]:
        print(f"  {row['self_pct_of_call']:5.1f}%  {row['self_ms_per_search']:8.3f} ms  x{row['ncalls_per_search']:<9} {row['function']}")
    print("\nclient thread, top self time:")
    for row in out["client_top_self_time"][:8]:
        print(f"  {row['self_pct_of_call']:5.1f}%  {row['self_ms_per_search']:8.3f} ms  x{row['ncalls_per_search']:<9} {row['function']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"\nwrote {args.out}\n{CAVEAT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
