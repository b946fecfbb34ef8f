"""Collect the benchmark JSONs into ``bench/results/summary.json`` and draw the plots.

    python bench/summary.py            # after bench_ingest.py, bench_search.py, bench_index_types.py (make bench runs all)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_BACKEND = "lite"  # FaceSearch's embedded default (milvus.uri = a Milvus Lite .db path)


def _load(name: str) -> dict[str, Any]:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else {}


def search_table(*docs: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{size: {backend: {p50_ms, p99_ms, recall, batched_qps, single_qps, nprobe, rss...}}} over every run file."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in docs:
        for run in doc.get("runs", []):
            if run.get("status") != "ok":
                table.setdefault(str(run.get("size")), {})[run.get("backend", "?")] = {"status": run.get("status")}
                continue
            single = run.get("single") or {}
            table.setdefault(str(run["size"]), {})[run["backend"]] = {
                "p50_ms": single.get("p50_ms"),
                "p95_ms": single.get("p95_ms"),
                "p99_ms": single.get("p99_ms"),
                "single_qps": single.get("single_qps"),
                "batched_qps": run.get("batched_qps"),
                "recall_at_10": run.get("recall"),
                "nprobe": run.get("nprobe"),
                "nlist": run.get("nlist"),
                "insert_s": run.get("insert_s"),
                "index_build_s": run.get("index_build_s"),
                "process_peak_rss_mb": run.get("process_peak_rss_mb"),
                "server_peak_rss_mb": run.get("server_peak_rss_mb"),
            }
    return table


def index_types_table(doc: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """{size: {index type: the cheapest search setting reaching the bench's min recall (or "skipped: ...")}}."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for run in doc.get("runs", []):
        row = table.setdefault(str(run["size"]), {})
        if run.get("status") != "ok":
            row[run["index_type"]] = {"status": run.get("status")}
            continue
        point = run.get("at_target") or {}
        row[run["index_type"]] = {
            "build_params": run.get("build_params"),
            "search_params": point.get("search_params"),
            "recall_at_10": point.get("recall"),
            "p50_ms": point.get("p50_ms"),
            "p99_ms": point.get("p99_ms"),
            "batched_qps": point.get("batched_qps"),
            "bytes_per_vector": run.get("bytes_per_vector"),
            "index_bytes_per_vector": run.get("index_bytes_per_vector"),
            "disk_bytes_per_vector": run.get("disk_bytes_per_vector"),
            "build_s": run.get("build_s"),
        }
    return table


def summarise() -> dict[str, Any]:
    ingest = _load("ingest.json")
    scale = _load("scale.json")
    search = _load("search.json")
    search_1m = _load("search_1m.json")
    default_store = _load("default_store.json")
    stub = _load("stub_search.json")
    restart = _load("server_restart.json")
    index_types = _load("index_types.json")
    table = search_table(search, search_1m)
    at = table.get("100000", {})
    ours, faiss, exact = at.get(DEFAULT_BACKEND, {}), at.get("faiss", {}), at.get("numpy", {})
    standalone = at.get("standalone", {})
    summary: dict[str, Any] = {
        **ingest.get("summary", {}),
        **scale.get("summary", {}),
        "search_backend": DEFAULT_BACKEND,
        "search_p50_ms": ours.get("p50_ms"),
        "search_p99_ms": ours.get("p99_ms"),
        "search_recall_at_10": ours.get("recall_at_10"),
        "search_batched_qps": ours.get("batched_qps"),
        "standalone_p50_ms": standalone.get("p50_ms"),
        "standalone_p99_ms": standalone.get("p99_ms"),
        "standalone_recall_at_10": standalone.get("recall_at_10"),
        "standalone_batched_qps": standalone.get("batched_qps"),
        "faiss_single_qps": faiss.get("single_qps"),
        "faiss_batched_qps": faiss.get("batched_qps"),
        "exact_single_qps": exact.get("single_qps"),
        "batched_vs_faiss": round(ours["batched_qps"] / faiss["batched_qps"], 4) if ours.get("batched_qps") and faiss.get("batched_qps") else None,
        "default_store_faces": default_store.get("faces"),
        "default_store_lite_p50_ms": (default_store.get("lite") or {}).get("p50_ms"),
        "default_store_p50_ms": (default_store.get("default_after_move") or {}).get("p50_ms"),
        "default_store_p99_ms": (default_store.get("default_after_move") or {}).get("p99_ms"),
        "default_store_recall_at_10": (default_store.get("default_after_move") or {}).get("recall_at_10"),
        "default_store_move_s": default_store.get("move_s"),
        "stub_search_p50_ms": (stub.get("stub_search") or {}).get("p50_ms"),
        "milvusclient_search_p50_ms": (stub.get("milvusclient_search") or {}).get("p50_ms"),
        "server_stop_plus_restart_s": restart.get("stop_plus_restart_s"),
        "search_by_size": table,
        "index_types_by_size": index_types_table(index_types),
        "index_types_min_recall": index_types.get("config", {}).get("min_recall"),
        "vectors": search.get("vectors"),
        "machine": search.get("machine") or ingest.get("machine"),
        "sources": [name for name, doc in (("ingest.json", ingest), ("search.json", search), ("search_1m.json", search_1m), ("index_types.json", index_types)) if doc],
    }
    return summary


def plot(summary: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    table = summary["search_by_size"]
    sizes = sorted(int(s) for s in table)
    if sizes:
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        backends = sorted({b for s in table.values() for b in s if "[" not in b})
        for backend in backends:
            points = [(n, table[str(n)][backend]["p50_ms"]) for n in sizes if table[str(n)].get(backend, {}).get("p50_ms")]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=backend)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("stored vectors (synthetic, identity-clustered, 128-d)")
        ax.set_ylabel("single-query p50 latency (ms)")
        ax.set_title("Search latency vs collection size (IVF_FLAT, recall@10 >= 0.99)")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
        fig.tight_layout()
        path = RESULTS / "search_latency.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    ingest = _load("ingest.json").get("pipelines", {})
    if ingest:
        fig, ax = plt.subplots(figsize=(7, 0.5 * len(ingest) + 1.6), dpi=110)
        names = list(ingest)
        ax.barh(names, [ingest[n]["group_s_per_photo"] for n in names], color=["#2a7" if n.startswith("facesearch") else "#999" for n in names])
        for i, n in enumerate(names):
            ax.annotate(f"{ingest[n]['group_s_per_photo']:.2f} s, VOC {ingest[n]['voc_faces_found']}/{ingest[n]['voc_faces_annotated']}",
                        (ingest[n]["group_s_per_photo"], i), xytext=(4, -3), textcoords="offset points", fontsize=8)
        ax.set_xlabel("seconds per 1920-px group photo (2 cores)")
        ax.set_title("Ingest: detect + embed + store")
        ax.set_xlim(0, max(ingest[n]["group_s_per_photo"] for n in names) * 1.6)
        fig.tight_layout()
        path = RESULTS / "ingest.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def main() -> int:
    summary = summarise()
    previous = _load("summary.json")  # a part of `make bench` run alone keeps the other parts' figures
    summary = {**previous, **{k: v for k, v in summary.items() if v not in (None, {}, []) or k not in previous}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2))
    plots = plot(summary)
    keys = [k for k in summary if k not in ("search_by_size", "index_types_by_size", "vectors", "machine", "sources")]
    for key in keys:
        print(f"{key:28s} {summary[key]}")  # noqa: T201 - a benchmark report is meant to be printed
    print(f"wrote {RESULTS / 'summary.json'} and {', '.join(p.name for p in plots)}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
