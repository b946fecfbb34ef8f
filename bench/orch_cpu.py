"""Where the CPU of a Dask embed run goes: CPU seconds per process (Prefect's temporary API server, the flow
process, each Dask worker) and per thread of the flow process, measured with psutil.

Wall time is noisy on a shared machine; CPU time is not. The run is bench_scale's 2-worker case (distinct
1920-px photos, shards through Prefect's DaskTaskRunner under ``prefect_test_harness``). ``--profile DIR``
also records py-spy (if installed: ``--py-spy PATH``) on the flow process and the API server, as collapsed
stacks of the threads that were running.

    python bench/orch_cpu.py --copies 16 --workers 2 --out /tmp/orch-cpu.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Self

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

log = logging.getLogger("bench.orch_cpu")


def role(proc: psutil.Process) -> str:
    """What a process of this run is, from its command line."""
    cmd = " ".join(proc.cmdline())
    if "uvicorn" in cmd and "prefect" in cmd:
        return "prefect-server"
    if "py-spy" in cmd:
        return "py-spy"
    if "resource_tracker" in cmd:
        return "resource-tracker"
    if "multiprocessing" in cmd or "spawn_main" in cmd:
        return "dask-worker"
    return "other"


class CpuSampler:
    """Keeps the last CPU time (user + system) seen for this process, its descendants and this process's threads."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.procs: dict[int, dict[str, Any]] = {}
        self.threads: dict[int, float] = {}
        self._me = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cpu-sampler")
        self.thread_names: dict[int, str] = {}
        self.machine: list[tuple[float, float]] = []  # (monotonic, busy CPU s of every process on the machine)

    def sample(self) -> None:
        times = psutil.cpu_times()
        self.machine.append((time.monotonic(), times.user + times.nice + times.system + times.irq + times.softirq + times.steal))
        for proc in [self._me, *self._me.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                entry = self.procs.setdefault(proc.pid, {"role": "flow" if proc.pid == self._me.pid else role(proc), "first": times.user + times.system})
                entry["last"] = times.user + times.system
                if entry["role"] == "dask-worker":
                    entry.setdefault("pinned", {}).update(pinned_threads(proc))
                    entry.setdefault("waits", {}).update(runqueue_waits(proc))
        for t in self._me.threads():
            self.threads[t.id] = t.user_time + t.system_time
        for t in threading.enumerate():
            if t.native_id is not None:
                self.thread_names[t.native_id] = t.name

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> Self:
        self.sample()
        self.threads_before = dict(self.threads)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sample()

    def report(self, seconds: float) -> dict[str, Any]:
        per_process = []
        for pid, entry in self.procs.items():
            if entry["role"] in ("py-spy",):
                continue
            # a process started during the run counts from 0; the flow and the server count from the first sample
            used = entry["last"] - (entry["first"] if entry["role"] in ("flow", "prefect-server") else 0.0)
            row = {"pid": pid, "role": entry["role"], "cpu_s": round(used, 2), "cores": round(used / seconds, 3)}
            if "pinned" in entry:
                row.update(pinned_threads=entry["pinned"], runqueue_wait_s=round(sum(entry["waits"].values()), 2))
            per_process.append(row)
        by_thread = Counter()
        for tid, cpu in self.threads.items():
            name = self.thread_names.get(tid, f"tid-{tid}")
            by_thread[name] += cpu - self.threads_before.get(tid, 0.0)
        by_role = Counter()
        for p in per_process:
            by_role[p["role"]] += p["cpu_s"]
        machine = self.machine[-1][1] - self.machine[0][1]
        ours = sum(by_role.values())
        return {
            "seconds": round(seconds, 2),
            "by_role": {k: round(v, 2) for k, v in by_role.items()},
            "cores": {"ours": round(ours / seconds, 3), "other_processes": round((machine - ours) / seconds, 3)},
            "processes": sorted(per_process, key=lambda p: -p["cpu_s"]),
            "flow_threads": {k: round(v, 2) for k, v in by_thread.most_common() if v >= 0.05},
        }


def pinned_threads(proc: psutil.Process) -> dict[str, Any]:
    """The threads of a process that may run on fewer CPUs than the process: name, CPUs, CPU seconds."""
    allowed = proc.cpu_affinity()
    pinned: dict[str, Any] = {}
    for t in proc.threads():
        with contextlib.suppress(OSError):
            cpus = sorted(os.sched_getaffinity(t.id))
            if cpus != sorted(allowed):
                name = Path(f"/proc/{proc.pid}/task/{t.id}/comm").read_text().strip()
                pinned[str(t.id)] = {"name": name, "cpus": cpus, "cpu_s": round(t.user_time + t.system_time, 2)}
    return pinned


def runqueue_waits(proc: psutil.Process) -> dict[int, float]:
    """Seconds each thread was runnable but waited for a CPU (Linux schedstat): high when threads share a pinned core."""
    waits = {}
    for t in proc.threads():
        with contextlib.suppress(OSError, ValueError, IndexError):
            waits[t.id] = int(Path(f"/proc/{proc.pid}/task/{t.id}/schedstat").read_text().split()[1]) / 1e9
    return waits


def server_pid() -> int | None:
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if role(child) == "prefect-server":
                return child.pid
    return None


@contextlib.contextmanager
def profiled(py_spy: str | None, profile: Path | None, pids: dict[str, int | None]):
    """py-spy record (running threads only) on each named pid while the block runs."""
    procs = []
    if py_spy and profile:
        profile.mkdir(parents=True, exist_ok=True)
        for name, pid in pids.items():
            if pid:
                out = profile / f"{name}.txt"
                procs.append(
                    subprocess.Popen(
                        [py_spy, "record", "--pid", str(pid), "--rate", "50", "--format", "raw", "--nonblocking", "-o", str(out)],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
        time.sleep(1.0)
    try:
        yield
    finally:
        for p in procs:
            p.send_signal(2)  # SIGINT: py-spy writes its file and exits
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=30)


def run(copies: int, shard_images: int, steps: list[str], py_spy: str | None, profile: Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """Embed the same photos once per step (``in_process`` or a worker count), each from an empty cache, under one harness."""
    from prefect.testing.utilities import prefect_test_harness

    from bench.bench_scale import make_photos
    from facesearch.ingest.dataset import build_manifest
    from facesearch.ingest.embed_plan import embed_in_process, plan_embedding
    from facesearch.settings import load_settings
    from flows.embed import embed_on_dask

    work = Path(tempfile.mkdtemp(prefix="facesearch-orch-cpu-"))
    results: dict[str, Any] = {}
    try:
        images = work / "images"
        n = make_photos(images, copies)
        with prefect_test_harness(server_startup_timeout=180):
            for step in steps:
                cache = work / "embeddings"
                shutil.rmtree(cache, ignore_errors=True)
                compute = {"shard_images": shard_images, "threads_per_worker": 1, **overrides.get("compute", {})}
                compute.update({"dask_address": ""} if step == "in_process" else {"dask_address": "local", "workers": int(step)})
                settings = load_settings(overrides={**overrides, "paths": {"images_dir": str(images), "embeddings_dir": str(cache)}, "compute": compute})
                plan = plan_embedding(build_manifest(settings), settings)
                spy = profile / step if profile else None
                with profiled(py_spy, spy, {"flow": os.getpid(), "server": server_pid()}), CpuSampler() as sampler:
                    started = time.perf_counter()
                    report = embed_on_dask(plan, settings) if step != "in_process" else embed_in_process(plan, settings)
                    seconds = time.perf_counter() - started
                results[step] = {
                    "photos": n,
                    "shards": len(plan.shards),
                    "images_embedded": report.images_embedded,
                    "images_per_s": round(report.images_embedded / seconds, 3),
                    "steady_images_per_s": report.steady_images_per_s,
                    "worker_cpu_s_per_image": report.cpu_s_per_image,
                    **sampler.report(seconds),
                }
                log.info("%s: %s", step, json.dumps({k: v for k, v in results[step].items() if k not in ("processes",)}))
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=16, help="copies of each of the 6 group photos")
    parser.add_argument("--shard-images", type=int, default=32)
    parser.add_argument("--steps", default="2", help="comma-separated: in_process and/or worker counts, e.g. in_process,1,2")
    parser.add_argument("--py-spy", default=shutil.which("py-spy"))
    parser.add_argument("--profile", type=Path, help="write py-spy collapsed stacks here")
    parser.add_argument("--set", action="append", default=[], help="section.key=value (JSON value) for the run's settings")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("distributed", "prefect", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)
        overrides.setdefault(section, {})[name] = value
    doc = run(args.copies, args.shard_images, args.steps.split(","), args.py_spy, args.profile, overrides)
    text = json.dumps(doc, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
