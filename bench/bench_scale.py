"""Scale-out benchmark: the re-index flow's embed step in this process vs fanned out on 1 and 2 Dask workers.

Same run, same photos: distinct copies of the six 1920-px group photos (each re-encoded with a different
quality and a one-pixel crop, so every copy has its own sha256 and is really embedded), cut into shards and
embedded (a) in-process with the encoder's default threads (2), (b) on a LocalCluster of 1 worker and
(c) of 2 workers, each worker with one inference thread, through Prefect's DaskTaskRunner (the flow's
path, Prefect API included). Each run starts from an empty embedding cache.

    python bench/bench_scale.py --copies 8 --out bench/results/scale.json
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))
SAMPLES = ROOT / "samples" / "faces"

log = logging.getLogger("bench.scale")


def make_photos(folder: Path, copies: int) -> int:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    for source in sorted((SAMPLES / "group_photos").glob("*.jpg")):
        image = Image.open(source).convert("RGB")
        for k in range(copies):
            buf = io.BytesIO()
            image.crop((k, 0, image.width, image.height)).save(buf, "JPEG", quality=90 - k)
            (folder / f"{source.stem}-{k}.jpg").write_bytes(buf.getvalue())
            n += 1
    return n


def timed_embed(images: Path, work: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    from facesearch.ingest.dataset import build_manifest
    from facesearch.ingest.embed_plan import embed_in_process, plan_embedding
    from facesearch.settings import load_settings
    from flows.embed import embed_on_dask

    cache = work / "embeddings"
    shutil.rmtree(cache, ignore_errors=True)
    settings = load_settings(overrides={"paths": {"images_dir": str(images), "embeddings_dir": str(cache)}, **overrides})
    manifest = build_manifest(settings)
    plan = plan_embedding(manifest, settings)
    started = time.perf_counter()
    report = embed_on_dask(plan, settings) if settings.compute.dask_address else embed_in_process(plan, settings)
    elapsed = time.perf_counter() - started
    return {"images": report.images_embedded, "faces": report.faces_new, "shards": len(plan.shards), "seconds": round(elapsed, 2),
            "images_per_s": round(report.images_embedded / elapsed, 3), "steady_images_per_s": report.steady_images_per_s,
            "cpu_s_per_image": report.cpu_s_per_image}


def run(out: Path, copies: int, shard_images: int) -> dict[str, Any]:
    from prefect.testing.utilities import prefect_test_harness

    work = Path(tempfile.mkdtemp(prefix="facesearch-bench-scale-"))
    images = work / "images"
    n = make_photos(images, copies)
    compute = {"shard_images": shard_images, "threads_per_worker": 1}
    configs = {
        "in_process": {"compute": {**compute, "dask_address": ""}},
        "dask_1_worker": {"compute": {**compute, "dask_address": "local", "workers": 1}},
        "dask_2_workers": {"compute": {**compute, "dask_address": "local", "workers": 2}},
    }
    results: dict[str, Any] = {}
    with prefect_test_harness(server_startup_timeout=180):
        for name, overrides in configs.items():
            results[name] = timed_embed(images, work, overrides)
            log.info("%-16s %s", name, results[name])
    one, two = results["dask_1_worker"]["images_per_s"], results["dask_2_workers"]["images_per_s"]
    doc = {
        "benchmark": "scale",
        "note": f"{n} distinct 1920-px photos ({copies} re-encoded copies of each group photo), shards of {shard_images}; "
                "seconds and images_per_s include the LocalCluster start and each worker's model load (what a run pays); "
                "steady_images_per_s runs from the first shard's start to the last shard's end.",
        "machine": {"cpus": os.cpu_count()},
        "runs": results,
        "summary": {"scale_workers_speedup": round(two / one, 2), "scale_in_process_images_per_s": results["in_process"]["images_per_s"],
                    "scale_1_worker_images_per_s": one, "scale_2_workers_images_per_s": two,
                    "scale_workers_speedup_steady": round(results["dask_2_workers"]["steady_images_per_s"] / results["dask_1_worker"]["steady_images_per_s"], 2)},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--shard-images", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("distributed", "prefect", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    doc = run(args.out, args.copies, args.shard_images)
    print(json.dumps(doc["runs"], indent=2))  # noqa: T201 - the benchmark's report
    print(json.dumps(doc["summary"]))  # noqa: T201


if __name__ == "__main__":
    main()
