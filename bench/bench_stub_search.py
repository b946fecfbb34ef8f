"""FaceStore.search on the standalone with and without the stub path (milvus.stub_search), interleaved.

One standalone with N faces; the same queries go, in shuffled order per query, through a FaceStore with
``stub_search`` on (the default), one with it off (``MilvusClient.search``) and ids-only searches. Reports p50
wall, the client's CPU (this process) and the server's CPU per search (from /proc), so a slow minute of the
machine hits every variant alike.

    python bench/bench_stub_search.py --faces 100000 --out bench/results/stub_search.json   # ~3 min here
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for p in (str(REPO / "src"), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)

import numpy as np

from bench.bench_search import face_records, nlist_for, percentiles


def server_cpu_s(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def interleaved(variants: dict[str, Callable[[np.ndarray], Any]], queries: np.ndarray, rounds: int, server_pid: int) -> dict[str, Any]:
    """Wall percentiles, client CPU p50 and server CPU mean per search, each variant called once per query in shuffled order."""
    for run in variants.values():
        for q in queries[:10]:
            run(q)
    wall: dict[str, list[float]] = {k: [] for k in variants}
    client: dict[str, list[float]] = {k: [] for k in variants}
    server: dict[str, list[float]] = {k: [] for k in variants}
    keys = list(variants)
    rng = random.Random(0)
    for _ in range(rounds):
        for q in queries:
            rng.shuffle(keys)
            for key in keys:
                s0, c0, t0 = server_cpu_s(server_pid), time.process_time(), time.perf_counter()
                variants[key](q)
                wall[key].append((time.perf_counter() - t0) * 1000)
                client[key].append((time.process_time() - c0) * 1000)
                server[key].append((server_cpu_s(server_pid) - s0) * 1000)
    return {
        key: {
            **percentiles(wall[key]),
            "client_cpu_p50_ms": round(statistics.median(client[key]), 3),
            "server_cpu_mean_ms": round(statistics.mean(server[key]), 3),
        }
        for key in variants
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nprobe", type=int, default=8)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "stub_search.json")
    args = ap.parse_args(argv)

    from bench.vectors import FaceLikeVectors, fit
    from facesearch.settings import IndexSettings, MilvusSettings
    from facesearch.store import FaceStore
    from facesearch.store.local_server import LocalMilvusServer

    work = Path(tempfile.mkdtemp(prefix="facesearch-bench-stub-"))
    server = LocalMilvusServer(work / "server").start()
    try:
        data = FaceLikeVectors(fit(128).params).dataset(args.faces, n_queries=args.queries)
        name, nlist = "face_search__stub_bench", nlist_for(args.faces)
        with FaceStore(MilvusSettings(uri=server.uri)) as stub, FaceStore(MilvusSettings(uri=server.uri, stub_search=False)) as plain:
            stub.ensure_collection(name, 128, IndexSettings(nlist=nlist))
            for start in range(0, args.faces, 2000):
                stub.client.insert(name, [r.to_row() for r in face_records(data["vectors"], data["identity"], start, min(args.faces, start + 2000))])
            stub.flush(name)
            # rows written to a loaded collection are searched as growing segments until the query node takes the
            # indexed ones over: index and load as the sweep does, so the search runs on the sealed, indexed segment
            stub.rebuild_index(name, nlist)
            k, nprobe = 10, args.nprobe
            same = all(
                [h.id for h in stub.search(name, q[None], k=k, nprobe=nprobe)[0]] == [h.id for h in plain.search(name, q[None], k=k, nprobe=nprobe)[0]]
                for q in data["queries"][:20]
            )
            results = interleaved(
                {
                    "stub_search": lambda q: stub.search(name, q[None], k=k, nprobe=nprobe),
                    "milvusclient_search": lambda q: plain.search(name, q[None], k=k, nprobe=nprobe),
                    "ids_only": lambda q: plain.neighbour_ids(name, q[None], k, nprobe),
                },
                data["queries"],
                args.rounds,
                server.state.pid,
            )
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    out = {"faces": args.faces, "nlist": nlist, "nprobe": args.nprobe, "k": 10, "same_ids": same, **results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
