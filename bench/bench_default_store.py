"""The embedded default at N faces, as a user meets it: a Milvus Lite path in ``milvus.uri``, nothing else.

Loads N face-like vectors into a Lite store through FaceStore, searches it (p50/p99, 200 single queries),
then lets the store move itself (``maybe_move_to_server``, milvus.auto_server_faces = N) and searches
again through a fresh ``FaceStore`` opened on the same Lite path, exactly as the CLI and API do: ``--windows``
windows of 200 searches ``--window-gap-s`` apart, pooled (this VM's speed moves by a third within minutes, so
one window is one moment), with each window's p50, CPU per search (client + standalone) and the machine's
busy and steal shares (/proc/stat) beside. Reports both stores, the move's duration and the
recall@10 of both against exact search.

    python bench/bench_default_store.py --faces 100000 --out bench/results/default_store.json   # ~7 min here
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for p in (str(REPO / "src"), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)

import numpy as np
import psutil

from bench.bench_search import exact_top_k, face_records, nlist_for, percentiles, recall_at_k


def timed_search(store: Any, name: str, queries: np.ndarray, k: int, nprobe: int, warmup: int = 10) -> dict[str, Any]:
    for q in queries[:warmup]:
        store.search(name, q[None], k=k, nprobe=nprobe)
    ms, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        hits = store.search(name, q[None], k=k, nprobe=nprobe)
        ms.append((time.perf_counter() - t0) * 1000)
        found.append([h.id for h in hits[0]])
    return {**percentiles(ms), "found": found, "ms": ms}


def cpu_ticks() -> list[int]:
    """The machine's CPU ticks from /proc/stat: user nice system idle iowait irq softirq steal."""
    return [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]


def window_load(before: list[int], after: list[int]) -> dict[str, float]:
    """Shares of the machine's CPU time during a window: busy (ours and anyone's) and steal (the hypervisor's)."""
    d = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(d) or 1
    return {"busy_pct": round(100 * (total - d[3] - d[4] - d[7]) / total, 1), "steal_pct": round(100 * d[7] / total, 1)}


def process_cpu_s(*procs: Any) -> float:
    return sum(t.user + t.system for t in (p.cpu_times() for p in procs))


def ids_only_search(store: Any, name: str, queries: np.ndarray, k: int, nprobe: int) -> dict[str, float]:
    """The same searches returning ids and distances only: what the engine costs without fetching the hits' fields."""
    for q in queries[:10]:
        store.neighbour_ids(name, q[None], k, nprobe)
    ms = []
    for q in queries:
        t0 = time.perf_counter()
        store.neighbour_ids(name, q[None], k, nprobe)
        ms.append((time.perf_counter() - t0) * 1000)
    return percentiles(ms)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--nprobe", type=int, default=8)
    ap.add_argument("--settle-s", type=float, default=60.0, help="idle time before the last measurement")
    ap.add_argument("--windows", type=int, default=5, help="search windows after the move, pooled: this VM's speed moves within minutes")
    ap.add_argument("--window-gap-s", type=float, default=10.0, help="idle time between the windows")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "default_store.json")
    args = ap.parse_args(argv)

    from bench.vectors import FaceLikeVectors, fit
    from facesearch.settings import IndexSettings, MilvusSettings
    from facesearch.store import FaceStore
    from facesearch.store.lite_to_server import maybe_move_to_server
    from facesearch.store.local_server import LocalMilvusServer

    work = Path(tempfile.mkdtemp(prefix="facesearch-bench-default-"))
    settings = MilvusSettings(uri=str(work / "milvus" / "facesearch.db"), server_dir=work / "milvus-server", auto_server_faces=args.faces)
    data = FaceLikeVectors(fit(args.dim).params).dataset(args.faces, n_queries=args.queries)
    truth = exact_top_k(data["vectors"], data["queries"], 10)
    name, nlist = "face_search__bench", nlist_for(args.faces)
    out: dict[str, Any] = {"faces": args.faces, "dim": args.dim, "nlist": nlist, "nprobe": args.nprobe, "queries": args.queries}
    try:
        with FaceStore(settings) as store:
            t0 = time.perf_counter()
            store.ensure_collection(name, args.dim, IndexSettings(nlist=nlist))
            for start in range(0, args.faces, 5000):
                store.upsert(name, face_records(data["vectors"], data["identity"], start, min(args.faces, start + 5000)))
            store.flush(name)
            store.rebuild_index(name, nlist)
            store.point_alias(settings.alias, name)
            out["lite_load_s"] = round(time.perf_counter() - t0, 1)
            lite = timed_search(store, name, data["queries"], 10, args.nprobe)
            out["lite"] = {k: v for k, v in lite.items() if k not in ("found", "ms")} | {"recall_at_10": recall_at_k(lite.pop("found"), truth, 10)}
            print(f"Lite: {out['lite']}", flush=True)
            t0 = time.perf_counter()
            moved = maybe_move_to_server(store, name, settings)
            out["move_s"] = round(time.perf_counter() - t0, 1)
            assert moved is not None, "the store did not move"
        t0 = time.perf_counter()
        with FaceStore(settings) as store:  # a new process's view: the same Lite path, now the standalone
            out["reopen_s"] = round(time.perf_counter() - t0, 2)
            out["backend_after_move"] = "milvus-lite" if store.on_lite else "milvus-server"
            server = LocalMilvusServer(settings.server_dir).running()
            procs = [psutil.Process(), *([psutil.Process(server.pid)] if server else [])]
            windows, loads = [], []
            for w in range(args.windows):
                if w:
                    time.sleep(args.window_gap_s)
                ticks, cpu_s = cpu_ticks(), process_cpu_s(*procs)
                windows.append(timed_search(store, store.resolve(settings.alias), data["queries"], 10, args.nprobe))
                calls = len(windows[-1]["ms"]) + 10  # with the warm-up
                loads.append(window_load(ticks, cpu_ticks()) | {"cpu_ms_per_search": round((process_cpu_s(*procs) - cpu_s) * 1000 / calls, 2)})
            out["default_after_move"] = percentiles([m for w in windows for m in w["ms"]]) | {
                "recall_at_10": recall_at_k(windows[0]["found"], truth, 10),
                "window_p50_ms": [w["p50_ms"] for w in windows],
                "window_gap_s": args.window_gap_s,
                # client + standalone CPU per search and the machine's state in each window: a slow window with
                # the same CPU per search and more steal is this VM's hypervisor, not FaceSearch or Milvus
                "window_load": loads,
            }
            out["ids_only_after_move"] = ids_only_search(store, store.resolve(settings.alias), data["queries"], 10, args.nprobe)
            time.sleep(args.settle_s)  # the standalone compacts and hands segments off in the background after a load
            settled = timed_search(store, store.resolve(settings.alias), data["queries"], 10, args.nprobe)
            out["settled_after_move"] = {k: v for k, v in settled.items() if k not in ("found", "ms")} | {"settle_s": args.settle_s}
        print(f"moved in {out['move_s']} s; default store after the move: {out['default_after_move']}", flush=True)
    finally:
        LocalMilvusServer(settings.server_dir).stop()
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
