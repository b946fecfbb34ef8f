"""``facesearch plan``: a Milvus cluster for N faces, from the index bench's measured per-vector costs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from facesearch.cli.common import JsonOpt, app, emit, run_command, stdout
from facesearch.settings import Settings


def _render(doc: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"{doc['faces']:.3g} faces, {doc['dim']}-d, {doc['qps']:g} QPS at recall@10 >= {doc['recall']}")
    for col in ("index", "search", "recall", "memory GB", "disk GB", "build h (1 node / cluster)", "shards", "query nodes", "fits"):
        table.add_column(col)
    for t in doc["types"]:
        table.add_row(
            t["index_type"], " ".join(f"{k}={v}" for k, v in t["search_params"].items()), f"{t['recall']:.4f}",
            f"{t['memory_gb']:,.0f}", f"{t['disk_gb']:,.0f}", f"{t['build_hours_one_node']:,.1f} / {t['build_hours_cluster']:,.1f}",
            str(t["shards"]), f"{t['query_nodes']} ({t['replicas']} replicas)",
            "yes" if t["fits"] else ("no: recall" if not t["fits_recall"] else "no: nodes"),
        )
    stdout.print(table)
    a = doc["assumptions"]
    sizes = ", ".join(f"{k} {v['sizes']}" for k, v in doc["measured"].items())
    stdout.print(f"from {doc['source']} (measured sizes: {sizes}); "
                 f"nodes of {a['node_memory_gb']:g} GB x {a['memory_headroom']:g} headroom, {a['node_cores']} cores; "
                 f"fitting: {', '.join(doc['fitting']) or 'none'}")
    for index_type, why in doc.get("not_measured", {}).items():
        stdout.print(f"{index_type}: no plan, the bench could not build it ({why})")
    if doc.get("check"):
        errors = "; ".join(f"{t} " + ", ".join(f"{k} {v:+.0%}" for k, v in e.items()) for t, e in doc["check"]["relative_errors"].items())
        stdout.print(f"model check, {doc['check']['to']} predicted from {doc['check']['from']}: {errors}")


@app.command()
def plan(
    ctx: typer.Context,
    faces: Annotated[float, typer.Option("--faces", help="Faces to store, e.g. 1e9.")] = 1e9,
    dim: Annotated[int, typer.Option("--dim", help="Embedding dimension.")] = 512,
    qps: Annotated[float, typer.Option("--qps", help="Queries per second to serve.")] = 200.0,
    recall: Annotated[float, typer.Option("--recall", help="Target recall@10.")] = 0.99,
    source: Annotated[Path | None, typer.Option("--from", help="Index bench JSON (default: capacity.bench_file).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Capacity plan per index type (memory, disk, build time, shards, query nodes) from measured bench costs."""

    def body(settings: Settings) -> None:
        from facesearch.pipeline.capacity import capacity_plan

        source_path = source
        if source_path is None:
            bench = Path(settings.capacity.bench_file)
            source_path = bench if bench.is_absolute() else Path(settings.paths.project_dir) / bench
        emit(capacity_plan(faces, dim, qps, recall, settings.capacity, source_path), as_json, _render)

    run_command(ctx, body)
