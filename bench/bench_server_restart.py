"""Stop and restart of the local Milvus standalone, as `facesearch store stop` + the next command meet it.

Starts a standalone in a temporary directory, writes a small collection, stops it (SIGTERM; Milvus quits by
itself after ``common.gracefulStopTimeout``, else we kill it after ``stop_timeout_s``), starts it again on the
same data and times until the first count answers; twice, so a slow first start does not decide it.

    python bench/bench_server_restart.py --out bench/results/server_restart.json   # ~2 min here
"""

from __future__ import annotations

import argparse
import json
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

from bench.bench_search import face_records


def restart_cycle(server: Any, name: str, settings_for: Any) -> dict[str, Any]:
    """Stop, start, first answer: seconds of each, whether the stop needed our kill, rows seen after."""
    from facesearch.store import FaceStore

    t0 = time.perf_counter()
    exited = server.stop()
    stop_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    server.start()
    healthy_s = time.perf_counter() - t0
    with FaceStore(settings_for(server.uri)) as store:
        rows = store.count(name)
    return {
        "stop_s": round(stop_s, 1),
        "killed": not exited,
        "healthy_s": round(healthy_s, 1),
        "first_answer_s": round(time.perf_counter() - t0, 1),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--cycles", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "server_restart.json")
    args = ap.parse_args(argv)

    from facesearch.settings import IndexSettings, MilvusSettings
    from facesearch.store import FaceStore
    from facesearch.store.local_server import LocalMilvusServer

    def settings_for(uri: str) -> MilvusSettings:
        return MilvusSettings(uri=uri, db_name="")

    server = LocalMilvusServer(Path(tempfile.mkdtemp(prefix="facesearch-bench-restart-")) / "server")
    t0 = time.perf_counter()
    server.start()
    out: dict[str, Any] = {"first_start_s": round(time.perf_counter() - t0, 1), "rows": args.rows}
    try:
        vectors = np.random.default_rng(0).normal(size=(args.rows, 128)).astype(np.float32)
        with FaceStore(settings_for(server.uri)) as store:
            store.ensure_collection("restart_bench", 128, IndexSettings(nlist=16))
            store.upsert("restart_bench", face_records(vectors, np.zeros(args.rows, dtype=int), 0, args.rows))
            store.flush("restart_bench")
        out["cycles"] = [restart_cycle(server, "restart_bench", settings_for) for _ in range(args.cycles)]
    finally:
        server.stop()
    out["stop_plus_restart_s"] = min(c["stop_s"] + c["first_answer_s"] for c in out["cycles"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    return 0 if all(c["rows"] == args.rows for c in out["cycles"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
