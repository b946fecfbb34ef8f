"""Which FaceStore operations (pymilvus 3.0.2) work against a Milvus 2.3.5 standalone the bench starts itself.

Runs each FaceSearch store operation once on a small synthetic collection and records ok / failed with the
error's first line; also lists loaded segments before/after a manual compaction (what the search
benchmark sees). The server is always stopped (also on error), including its ``milvus run standalone``
process.

    python bench/check_standalone.py [--out bench/results/standalone_compat.json] [--backend standalone|lite|lite-server]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for p in (str(REPO / "src"), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)

import numpy as np  # noqa: E402

from bench.procs import LiteServer, StandaloneServer  # noqa: E402


def segments(store: Any, name: str) -> Any:
    return [{"id": s.segment_id, "rows": s.num_rows, "state": str(s.state), "index": s.index_name} for s in store.client.list_loaded_segments(name)]


def run_checks(uri: str, n: int = 3000, dim: int = 128) -> list[dict[str, Any]]:
    from facesearch.settings import IndexSettings, MilvusSettings
    from facesearch.store import FaceRecord, FaceStore

    results: list[dict[str, Any]] = []

    def check(what: str, fn: Callable[[], Any], expect: Callable[[Any], bool] | None = None) -> Any:
        t0 = time.perf_counter()
        try:
            value = fn()
            ok = expect(value) if expect else True
            results.append({"check": what, "ok": bool(ok), "s": round(time.perf_counter() - t0, 3), "value": _short(value)})
            return value
        except Exception as exc:  # noqa: BLE001 - that is what we record
            results.append({"check": what, "ok": False, "s": round(time.perf_counter() - t0, 3), "error": f"{type(exc).__name__}: {_first(exc)}"})
            return None

    rng = np.random.default_rng(0)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    store = FaceStore(MilvusSettings(uri=uri, timeout_s=60, retries=0))
    name, name2 = "face_search__compat", "face_search__compat2"
    try:
        check("server version", lambda: store.client.get_server_version())
        check("ensure_collection (schema with ARRAY fields, IVF_FLAT nlist=64 nested params, Strong)", lambda: store.ensure_collection(name, dim, IndexSettings(nlist=64, nprobe=8)))
        check("describe_index reports nlist=64 (index_info)", lambda: store.index_info(name), lambda i: i.nlist == 64 and i.index_type == "IVF_FLAT")
        recs = [
            FaceRecord(i, f"/p/{i}.jpg", [f"/p/{i}.jpg", "/shared/copy.jpg"], f"{i:064x}", i, i % 3, [1.0, 2.0, 3.0, 4.0], 0.99, f"person_{i // 10}", "synthetic", v[i])
            for i in range(n)
        ]
        check("upsert (FaceStore.upsert, 3000 rows)", lambda: store.upsert(name, recs), lambda c: c == n)
        check("upsert again, same ids (no duplicates)", lambda: store.upsert(name, recs[:100]))
        check("flush", lambda: store.client.flush(name))
        check("count(*) == N after upsert twice", lambda: store.count(name), lambda c: c == n)
        check("count with filter identity == 'person_3'", lambda: store.count(name, 'identity == "person_3"'), lambda c: c == 10)
        check("rebuild_index nlist=32 (release, drop, create, verify, load)", lambda: store.rebuild_index(name, 32), lambda i: i.nlist == 32)
        check("search top-10, own vector first", lambda: store.search(name, v[:5], k=10, nprobe=8), lambda h: [r[0].id for r in h] == [0, 1, 2, 3, 4])
        check("search hit fields (image_paths ARRAY, bbox ARRAY)", lambda: store.search(name, v[7:8], k=1, nprobe=8)[0][0], lambda h: h.image_paths == ["/p/7.jpg", "/shared/copy.jpg"] and h.bbox == [1.0, 2.0, 3.0, 4.0])
        check(
            'filter array_contains(image_paths, "/p/7.jpg")',
            lambda: store.search(name, v[7:8], k=5, nprobe=8, filter='array_contains(image_paths, "/p/7.jpg")'),
            lambda h: [x.id for x in h[0]] == [7],
        )
        check(
            "filter array_contains(image_paths, '/shared/copy.jpg') (every row)",
            lambda: store.search(name, v[7:8], k=5, nprobe=8, filter='array_contains(image_paths, "/shared/copy.jpg")'),
            lambda h: len(h[0]) == 5,
        )
        check("filter image_sha256 in [...] (query)", lambda: store.query(name, f'image_sha256 in ["{5:064x}", "{6:064x}"]', ["id"]), lambda r: sorted(x["id"] for x in r) == [5, 6])
        check("range search (radius)", lambda: store.search(name, v[:1], k=10, nprobe=32, radius=0.5), lambda h: [x.id for x in h[0]] == [0])
        check("query_iterator (iter_rows)", lambda: sum(len(b) for b in store.iter_rows(name, ["id"], batch_size=1000)), lambda c: c == n)
        check("create alias face_search (point_alias)", lambda: store.point_alias("face_search", name))
        check("resolve alias", lambda: store.resolve("face_search"), lambda t: t == name)
        check("search through alias", lambda: store.search("face_search", v[:1], k=1, nprobe=8), lambda h: h[0][0].id == 0)
        check("second collection", lambda: store.ensure_collection(name2, dim, IndexSettings(nlist=16, nprobe=8)))
        check("alter alias to second collection", lambda: store.point_alias("face_search", name2), lambda prev: prev == name)
        check("describe_alias after alter", lambda: store.alias_target("face_search"), lambda t: t == name2)
        check("delete_ids", lambda: store.delete_ids(name, [0, 1, 2]))
        check("count after delete", lambda: store.count(name), lambda c: c == n - 3)
        check("list_loaded_segments", lambda: segments(store, name))
        check("compact + get_compaction_state", lambda: _compact(store, name))
        check("drop_index on a loaded collection is refused by a server (FaceStore.rebuild_index releases first)", lambda: _refused(lambda: store.client.drop_index(name2, "embedding")), lambda r: r is True or r == "lite allows it")
        check("get_load_state", lambda: store.client.get_load_state(name))
    finally:
        for c in (name, name2):
            try:
                store.client.drop_alias("face_search")
            except Exception:  # noqa: BLE001
                pass
            try:
                store.drop_collection(c)
            except Exception:  # noqa: BLE001
                pass
        store.close()
    return results


def _compact(store: Any, name: str) -> str:
    job = store.client.compact(name)
    t0 = time.time()
    state = ""
    while time.time() - t0 < 60:
        state = store.client.get_compaction_state(job)
        if state == "Completed":
            break
        time.sleep(0.5)
    return f"job {job}: {state}"


def _refused(fn: Callable[[], Any]) -> Any:
    try:
        fn()
    except Exception:  # noqa: BLE001
        return True
    return "lite allows it"


def _first(exc: BaseException) -> str:
    return (str(exc).strip() or type(exc).__name__).splitlines()[0][:300]


def _short(value: Any) -> Any:
    text = repr(value)
    return text if len(text) < 300 else text[:300] + "..."


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["standalone", "lite", "lite-server"], default="standalone")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="facesearch-compat-"))
    server: Any = None
    out: dict[str, Any] = {"backend": args.backend}
    try:
        if args.backend == "standalone":
            server = StandaloneServer(work / "milvus").start()
            uri = server.uri
        elif args.backend == "lite-server":
            server = LiteServer(work / "data", work / "server.log").start()
            uri = server.uri
        else:
            uri = str(work / "compat.db")
        out["uri"] = uri
        out["checks"] = run_checks(uri)
    except Exception as exc:  # noqa: BLE001
        out["error"] = f"{type(exc).__name__}: {_first(exc)}"
        out["traceback"] = traceback.format_exc()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    for c in out.get("checks", []):
        print(f"{'ok    ' if c['ok'] else 'FAILED'} {c['check']}: {c.get('error') or c.get('value')}")
    if "error" in out:
        print("ERROR", out["error"])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    return 0 if "error" not in out and all(c["ok"] for c in out.get("checks", [])) else 1


if __name__ == "__main__":
    raise SystemExit(main())
