"""Search benchmark: FaceSearch's own search path (``FaceStore.search``) on each embedded Milvus candidate,
side by side with faiss ``IndexIVFFlat`` and numpy exact search, on the same synthetic vectors and queries.

Backends (``--backends``):

    lite          Milvus Lite 3.2.2 in-process (milvus.uri = DIR/facesearch.db)
    lite-server   milvus-lite 3.2.2 server mode (``milvus-lite server``; milvus.uri = http://127.0.0.1:P)
    standalone    Milvus 2.3.5 standalone (PyPI ``milvus``), started and stopped by the bench
    faiss         faiss IndexIVFFlat in-process, same vectors, nlist and nprobe search
    numpy         numpy exact search (the ground truth; recall 1 by construction)

Per size and backend: insert/build time, index build time, nprobe = the smallest value of the grid with
recall@k >= --min-recall against exact search (recall reported), single-query p50/p95/p99 over
sequential one-vector calls after warm-up, batched QPS (all queries in one call), peak RSS of the
benchmark process and of the server process tree.

Every backend runs in its own worker subprocess (new session) under a timeout and an RSS watchdog;
Milvus Lite processes also get an address-space cap (RLIMIT_AS), so a configuration that blows up is
recorded as ``failed: ...`` / ``killed: ...`` instead of taking the machine down. Servers are stopped
in ``finally`` blocks; if a worker is killed, the parent kills its whole process group and anything
still running from the run's work directory.

The vectors are SYNTHETIC (bench/vectors.py): identity-clustered unit vectors fitted to the genuine/
impostor distance statistics of real dlib embeddings. They are not face data.

    python bench/bench_search.py --sizes 10000 100000 --dim 128 --out bench/results/search.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import math
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for p in (str(REPO / "src"), str(REPO)):  # this checkout's facesearch, not whatever the venv maps
    if p not in sys.path:
        sys.path.insert(0, p)

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from bench.procs import MB, LiteServer, StandaloneServer, kill_processes_using, tree_rss  # noqa: E402

ALL_BACKENDS = ("lite", "lite-server", "standalone", "faiss", "numpy")
MILVUS_BACKENDS = ("lite", "lite-server", "standalone")
BACKEND_LABELS = {
    "lite": "Milvus Lite 3.2.2 in-process",
    "lite-server": "milvus-lite 3.2.2 server mode",
    "standalone": "Milvus 2.3.5 standalone",
    "faiss": "faiss IndexIVFFlat",
    "numpy": "numpy exact",
}
CAVEAT = (
    "Timings were taken on a shared 2-core machine where other jobs may run at the same time: treat them as "
    "indicative and re-run `python bench/bench_search.py ...` on a quiet machine before quoting them. "
    "Vectors are synthetic (bench/vectors.py), not face data."
)


# -- small utilities --------------------------------------------------------------------------------
def nlist_for(n: int) -> int:
    """FaceSearch's sweep centre: the power of two at or below 4*sqrt(N) (facesearch.pipeline.sweep.derive_nlist_grid)."""
    return 1 << max(0, int(math.floor(math.log2(max(4 * math.sqrt(max(n, 1)), 1)))))


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p95_ms": round(float(np.percentile(a, 95)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "mean_ms": round(float(a.mean()), 3),
        "single_qps": round(1000.0 / float(a.mean()), 1),
        "calls": len(ms),
    }


def recall_at_k(found: list[list[int]] | np.ndarray, truth: np.ndarray, k: int) -> float:
    hits = 0
    for f, t in zip(found, truth, strict=True):
        hits += len(set(int(x) for x in list(f)[:k]) & set(int(x) for x in t[:k]))
    return hits / (k * len(truth))


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int | None = None) -> np.ndarray:
    """Exact L2 top-k row ids (nearest first) in numpy (query chunks keep the distance block <= ~200 MB)."""
    chunk = chunk or max(8, min(256, 50_000_000 // max(1, len(vectors))))
    sq = np.einsum("ij,ij->i", vectors, vectors)
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), chunk):
        q = queries[s : s + chunk]
        d = sq[None, :] - 2.0 * (q @ vectors.T)
        top = np.argpartition(d, k, axis=1)[:, :k]
        order = np.take_along_axis(d, top, axis=1).argsort(axis=1)
        out[s : s + chunk] = np.take_along_axis(top, order, axis=1)
    return out


def face_records(vectors: np.ndarray, identity: np.ndarray, start: int, stop: int) -> list[Any]:
    """FaceRecords for rows start..stop (row number = id), scalar fields filled with dummy values."""
    from facesearch.store import FaceRecord

    return [
        FaceRecord(
            id=i,
            image_path=f"/bench/photos/{int(identity[i])}/{i}.jpg",
            image_paths=[f"/bench/photos/{int(identity[i])}/{i}.jpg"],
            image_sha256=f"{i:064x}",
            image_phash=i,
            face_index=0,
            bbox=[10.0, 20.0, 110.0, 140.0],
            det_prob=0.99,
            identity=f"person_{int(identity[i])}",
            encoder="synthetic-bench",
            embedding=vectors[i],
        )
        for i in range(start, stop)
    ]


def rss_now() -> int:
    return psutil.Process().memory_info().rss


def peak_rss_self() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- the worker: one backend, one size --------------------------------------------------------------
class Worker:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.backend = spec["backend"]
        self.k = spec["k"]
        self.result_path = Path(spec["result_path"])
        self.result: dict[str, Any] = {"backend": self.backend, "status": "running", "steps_done": []}
        data = Path(spec["data_dir"])
        self.vectors = np.load(data / "vectors.npy")
        self.identity = np.load(data / "identity.npy")
        self.queries = np.load(data / "queries.npy")
        self.truth = np.load(data / "truth.npy")
        self.result["rss_after_loading_data_mb"] = round(rss_now() / MB, 1)

    def save(self) -> None:
        tmp = self.result_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.result, indent=1, default=str))
        tmp.replace(self.result_path)

    def step(self, name: str, **values: Any) -> None:
        self.result.update(values)
        self.result["steps_done"].append(name)
        self.result["process_peak_rss_mb"] = round(peak_rss_self() / MB, 1)
        self.save()

    def run(self) -> int:
        try:
            if self.backend in MILVUS_BACKENDS:
                self.run_milvus()
            elif self.backend == "faiss":
                self.run_faiss()
            elif self.backend == "numpy":
                self.run_numpy()
            else:
                raise ValueError(f"unknown backend {self.backend}")
            self.result["status"] = "ok"
        except MemoryError as exc:
            self.result["status"] = f"failed: MemoryError {first_line(exc)}"
            self.result["traceback"] = traceback.format_exc()[-3000:]
        except BaseException as exc:  # noqa: BLE001 - recorded, the parent decides
            text = f"{type(exc).__name__}: {first_line(exc)}"
            if any(s in text.lower() for s in ("bad_alloc", "memory", "cannot allocate")):
                text = "MemoryError-like " + text
            self.result["status"] = f"failed: {text}"
            self.result["traceback"] = traceback.format_exc()[-3000:]
        finally:
            self.result["process_peak_rss_mb"] = round(peak_rss_self() / MB, 1)
            self.save()
        return 0

    # -- nprobe choice and the timed phases, shared by every IVF backend --------------------------
    def choose_nprobe(self, search_batch, nlist: int) -> tuple[int, float, list[dict[str, Any]]]:
        """Smallest nprobe of the grid with recall@k >= min_recall (else the best seen)."""
        grid = [p for p in self.spec["nprobe_grid"] if p <= nlist] or [nlist]
        trials = []
        best = (grid[-1], -1.0)
        for nprobe in grid:
            t0 = time.perf_counter()
            found = search_batch(self.queries, nprobe)
            secs = time.perf_counter() - t0
            rec = recall_at_k(found, self.truth, self.k)
            trials.append({"nprobe": nprobe, "recall": round(rec, 4), "batched_qps": round(len(self.queries) / secs, 1)})
            self.result["nprobe_trials"] = trials
            self.save()
            if rec > best[1]:
                best = (nprobe, rec)
            if rec >= self.spec["min_recall"]:
                return nprobe, rec, trials
        return best[0], best[1], trials

    def timed_single(self, search_one) -> dict[str, Any]:
        q = self.queries
        for i in range(self.spec["warmup"]):
            search_one(q[i % len(q)])
        ms = []
        for i in range(self.spec["latency_queries"]):
            t0 = time.perf_counter()
            search_one(q[(i + self.spec["warmup"]) % len(q)])
            ms.append((time.perf_counter() - t0) * 1000)
        return percentiles(ms)

    def timed_batched(self, search_batch) -> dict[str, Any]:
        qps = []
        for _ in range(self.spec["batch_repeats"]):
            t0 = time.perf_counter()
            search_batch(self.queries)
            qps.append(len(self.queries) / (time.perf_counter() - t0))
        return {"batched_qps": round(float(np.median(qps)), 1), "batched_qps_all": [round(x, 1) for x in qps], "batch_size": len(self.queries)}

    # -- faiss / numpy ------------------------------------------------------------------------------
    def run_faiss(self) -> None:
        import faiss

        n, d = self.vectors.shape
        nlist = self.spec["nlist"]
        t0 = time.perf_counter()
        quantizer = faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_L2)
        index.train(self.vectors)
        train_s = time.perf_counter() - t0
        index.add(self.vectors)
        build_s = time.perf_counter() - t0
        self.step("build", nlist=nlist, index_build_s=round(build_s, 3), train_s=round(train_s, 3), insert_s=None, faiss_threads=faiss.omp_get_max_threads())

        def batch(qs: np.ndarray, nprobe: int | None = None) -> np.ndarray:
            if nprobe is not None:
                index.nprobe = nprobe
            return index.search(np.ascontiguousarray(qs), self.k)[1]

        nprobe, rec, _ = self.choose_nprobe(batch, nlist)
        index.nprobe = nprobe
        self.step("nprobe", nprobe=nprobe, recall=round(rec, 4))
        self.step("single", single=self.timed_single(lambda q: index.search(q[None], self.k)))
        self.step("batched", **self.timed_batched(lambda qs: index.search(qs, self.k)))

    def run_numpy(self) -> None:
        v = self.vectors
        t0 = time.perf_counter()
        sq = np.einsum("ij,ij->i", v, v)
        self.step("build", nlist=None, index_build_s=round(time.perf_counter() - t0, 3), insert_s=None)
        k = self.k

        def one(q: np.ndarray) -> np.ndarray:
            dd = sq - 2.0 * (v @ q)
            top = np.argpartition(dd, k)[:k]
            return top[np.argsort(dd[top])]

        found = exact_top_k(v, self.queries, k)
        self.step("nprobe", nprobe=None, recall=round(recall_at_k(found, self.truth, k), 4))
        self.step("single", single=self.timed_single(one))
        self.step("batched", **self.timed_batched(lambda qs: exact_top_k(v, qs, k)))

    # -- Milvus through FaceStore ----------------------------------------------------------------------
    def run_milvus(self) -> None:
        from bench.procs import PeakSampler
        from facesearch.settings import IndexSettings, MilvusSettings
        from facesearch.store import FaceStore

        spec, backend = self.spec, self.backend
        work = Path(spec["work_dir"]) / backend
        work.mkdir(parents=True, exist_ok=True)
        server: LiteServer | StandaloneServer | None = None
        sampler = PeakSampler(lambda: server.pid if server is not None else None, interval_s=0.1)
        n, dim = self.vectors.shape
        nlist = spec["nlist"]
        name = "face_search__bench"
        try:
            with sampler:
                t0 = time.perf_counter()
                if backend == "lite":
                    uri = str(work / "facesearch.db")
                elif backend == "lite-server":
                    server = LiteServer(work / "data", work / "milvus-lite-server.log", as_limit_bytes=spec.get("as_limit_bytes"))
                    server.start()
                    uri = server.uri
                else:
                    server = StandaloneServer(work / "milvus")
                    server.start()
                    uri = server.uri
                self.step("server_start", uri=uri, server_start_s=round(time.perf_counter() - t0, 3), server_pid=server.pid if server else None)

                settings = MilvusSettings(uri=uri, timeout_s=spec["rpc_timeout_s"], retries=0, insert_batch=spec["insert_batch"])
                t0 = time.perf_counter()
                store = FaceStore(settings)
                try:
                    created = store.ensure_collection(name, dim, IndexSettings(nlist=nlist, nprobe=min(16, nlist)))
                    self.step("create", create_s=round(time.perf_counter() - t0, 3), created=created)

                    # Insert through FaceSearch's own write path: FaceStore.upsert(FaceRecord...) in chunks.
                    t0 = time.perf_counter()
                    chunk = spec["records_chunk"]
                    for s in range(0, n, chunk):
                        store.upsert(name, face_records(self.vectors, self.identity, s, min(n, s + chunk)))
                    insert_s = time.perf_counter() - t0
                    flush_s = None
                    if spec.get("flush", True):
                        t1 = time.perf_counter()
                        store.client.flush(name)
                        flush_s = round(time.perf_counter() - t1, 3)
                    self.step("insert", insert_s=round(insert_s, 3), flush_s=flush_s, insert_path=f"FaceStore.upsert, milvus.insert_batch={spec['insert_batch']}" + ("" if spec.get("flush", True) else ", NO flush (as FaceSearch does today)"))
                    if spec.get("flush", True):
                        # Reach the steady segment layout first (a server auto-compacts small segments about a
                        # minute later and re-indexes them, which changes recall and latency mid-measurement).
                        self.step("compact", compaction=self.settle(store, name, n, work, compact=True))

                    # Index build as FaceSearch's sweep/promote does it: release, drop, create, verify, load.
                    t0 = time.perf_counter()
                    info = store.rebuild_index(name, nlist)
                    rebuild_s = time.perf_counter() - t0
                    wait = self.wait_index_built(store, name, n)
                    index_build_s = time.perf_counter() - t0
                    if spec.get("flush", True):
                        wait["settle"] = self.settle(store, name, n, work, compact=False)
                    count = store.count(name)
                    self.step(
                        "index",
                        nlist=info.nlist,
                        index_info=info.as_dict(),
                        rebuild_index_s=round(rebuild_s, 3),
                        index_build_s=round(index_build_s, 3),
                        index_wait=wait,
                        count=count,
                        describe_index=_jsonable(store.client.describe_index(name, "embedding")),
                    )
                    if count != n:
                        raise RuntimeError(f"{backend} holds {count} rows after inserting {n}")

                    def batch(qs: np.ndarray, nprobe: int) -> list[list[int]]:
                        return [[h.id for h in row] for row in store.search(name, qs, k=self.k, nprobe=nprobe)]

                    layout_before = self.segment_layout(store, name, work)
                    nprobe, rec, _ = self.choose_nprobe(batch, nlist)
                    self.step("nprobe", nprobe=nprobe, recall=round(rec, 4))
                    self.step("single", single=self.timed_single(lambda q: store.search(name, q[None], k=self.k, nprobe=nprobe)))
                    self.step("batched", **self.timed_batched(lambda qs: store.search(name, qs, k=self.k, nprobe=nprobe)))
                    for level in spec.get("consistency_variants") or []:
                        self.result.setdefault("variants", {})[level] = self.consistency_variant(store, name, nprobe, level, batch)
                        self.step(f"variant_{level}")
                    layout_after = self.segment_layout(store, name, work)
                    self.step("segments", segments={"before": layout_before, "after": layout_after, "changed_during_measurement": layout_before != layout_after})
                finally:
                    store.close()
        finally:
            self.result["server_peak_rss_mb"] = round(sampler.peak / MB, 1) if server is not None else None
            if server is not None:
                t0 = time.perf_counter()
                server.stop()
                self.result["server_stop_s"] = round(time.perf_counter() - t0, 3)
                # the server was our child: its peak RSS as the kernel saw it
                self.result["server_peak_rss_mb_rusage"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
            self.save()

    def consistency_variant(self, store: Any, name: str, nprobe: int, level: str, batch: Any) -> dict[str, Any]:
        """The same FaceStore.search calls with ``consistency_level=level`` added to every MilvusClient.search.

        FaceSearch creates its collections with consistency_level="Strong": on a Milvus server each search
        then waits for the next time tick (proxy.timeTickInterval, 200 ms by default in 2.3.5).
        """
        client = store.client
        original = client.search
        client.search = functools.partial(original, consistency_level=level)
        try:
            rec = recall_at_k(batch(self.queries, nprobe), self.truth, self.k)
            single = self.timed_single(lambda q: store.search(name, q[None], k=self.k, nprobe=nprobe))
            batched = self.timed_batched(lambda qs: store.search(name, qs, k=self.k, nprobe=nprobe))
        finally:
            del client.search  # back to the class method
        return {"search_consistency_level": level, "nprobe": nprobe, "recall": round(rec, 4), "single": single, **batched}

    @staticmethod
    def segment_layout(store: Any, name: str, work: Path) -> dict[str, Any]:
        """Rows per loaded segment (servers) or data files per collection (Lite has no segment RPCs)."""
        try:
            segs = store.client.list_loaded_segments(name)
            return {"loaded_segment_rows": sorted(int(x.num_rows) for x in segs), "indexed": all(bool(x.index_name) for x in segs)}
        except Exception as exc:  # noqa: BLE001 - milvus-lite does not implement GetQuerySegmentInfo
            files = sorted(work.rglob("data_*.parquet"))
            return {"lite_data_files": len(files), "lite_index_files": len([f for f in work.rglob("*") if f.is_file() and "index" in str(f.relative_to(work)).lower()]), "note": f"list_loaded_segments: {first_line(exc)[:80]}"}

    def settle(self, store: Any, name: str, n: int, work: Path, compact: bool, timeout_s: float = 600) -> dict[str, Any]:
        """Manual compaction (optional), then wait until the loaded segments are the persistent ones, indexed.

        milvus-lite answers compact() with success and compacts in the background on its own; it has no
        segment RPCs, so for Lite this only records its data files.
        """
        t0 = time.perf_counter()
        info: dict[str, Any] = {}
        client = store.client
        if compact:
            try:
                # Milvus 2.3 only compacts indexed segments (dataCoord.compaction.indexBasedCompaction): wait first.
                info["index_before_compact"] = self.wait_index_built(store, name, n, timeout_s=timeout_s)
                job = client.compact(name)
                while time.perf_counter() - t0 < timeout_s and client.get_compaction_state(job) != "Completed":
                    time.sleep(0.5)
                info["compact_s"] = round(time.perf_counter() - t0, 3)
            except Exception as exc:  # noqa: BLE001
                info["compact_error"] = first_line(exc)
        try:
            stable, last = 0, None
            while time.perf_counter() - t0 < timeout_s:
                persistent = sorted((int(x.segment_id), int(x.num_rows)) for x in client.list_persistent_segments(name))
                loaded = sorted((int(x.segment_id), int(x.num_rows)) for x in client.list_loaded_segments(name))
                indexed = all(bool(x.index_name) for x in client.list_loaded_segments(name))
                desc = client.describe_index(name, "embedding")
                done = loaded == persistent and indexed and not desc.get("pending_index_rows") and sum(r for _, r in loaded) >= n
                stable = stable + 1 if done and loaded == last else 0
                last = loaded
                if stable >= 2:
                    break
                time.sleep(1.0)
            info["segments"] = [r for _, r in (last or [])]
        except Exception as exc:  # noqa: BLE001
            info["segments_error"] = first_line(exc)[:120]
            info["layout"] = self.segment_layout(store, name, work)
        info["settle_s"] = round(time.perf_counter() - t0, 3)
        return info

    def wait_index_built(self, store: Any, name: str, n: int, timeout_s: float = 600) -> dict[str, Any]:
        """Poll describe_index until every row is indexed (servers build asynchronously)."""
        t0 = time.perf_counter()
        desc: dict[str, Any] = {}
        while time.perf_counter() - t0 < timeout_s:
            desc = store.client.describe_index(name, "embedding")
            indexed, total = desc.get("indexed_rows"), desc.get("total_rows")
            pending = desc.get("pending_index_rows", 0)
            if indexed is None or (indexed >= min(n, total or n) and not pending):
                break
            time.sleep(0.25)
        return {"waited_s": round(time.perf_counter() - t0, 3), "indexed_rows": desc.get("indexed_rows"), "total_rows": desc.get("total_rows")}


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


# -- the parent: data, workers under limits, tables -------------------------------------------------
def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("pymilvus", "milvus-lite", "milvus", "faiss-cpu", "numpy", "grpcio", "protobuf"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    with contextlib.suppress(Exception):
        out["facesearch_git"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    return out


def run_worker_process(spec: dict[str, Any], timeout_s: float, rss_cap_bytes: int, as_limit_bytes: int | None) -> dict[str, Any]:
    """Run one backend in a fresh session under a timeout, an RSS watchdog and (optionally) RLIMIT_AS."""
    spec_path = Path(spec["result_path"]).with_suffix(".spec.json")
    spec_path.write_text(json.dumps(spec))
    log_path = Path(spec["result_path"]).with_suffix(".log")

    def preexec() -> None:
        os.setsid()
        if as_limit_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (as_limit_bytes, as_limit_bytes))

    started = time.perf_counter()
    verdict = None
    tree_peak = 0
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "_worker", str(spec_path)], stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec, cwd=str(REPO))
        try:
            while proc.poll() is None:
                rss = tree_rss(proc.pid)
                tree_peak = max(tree_peak, rss)
                if rss > rss_cap_bytes:
                    verdict = f"killed: process tree RSS {rss / MB:.0f} MB over the {rss_cap_bytes / MB:.0f} MB cap"
                    break
                if time.perf_counter() - started > timeout_s:
                    verdict = f"killed: timeout after {timeout_s:.0f} s"
                    break
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            # anything the worker started (servers) that escaped its process group
            leftovers = kill_processes_using(Path(spec["work_dir"]) / spec["backend"])
    result: dict[str, Any] = {"backend": spec["backend"], "status": "no result"}
    with contextlib.suppress(Exception):
        result = json.loads(Path(spec["result_path"]).read_text())
    if verdict:
        result["status"] = verdict + (f" (worker was at step after {result.get('steps_done', [])[-1:]})" if result.get("steps_done") else "")
    elif proc.returncode != 0:
        sig = -proc.returncode if proc.returncode < 0 else None
        result["status"] = f"failed: worker exited with {'signal ' + signal.Signals(sig).name if sig else proc.returncode}" + (
            " (likely out of memory under RLIMIT_AS)" if as_limit_bytes and sig in (signal.SIGABRT, signal.SIGSEGV, signal.SIGKILL) else ""
        )
    elif result.get("status") == "running":
        result["status"] = "failed: worker stopped without a result"
    if str(result.get("status", "")).startswith("failed") and "MemoryError" not in str(result["status"]):
        logs = ""
        with contextlib.suppress(Exception):
            logs = log_path.read_text(errors="replace")[-200_000:]
        for f in (Path(spec["work_dir"]) / spec["backend"]).glob("*.log"):
            with contextlib.suppress(Exception):
                logs += f.read_text(errors="replace")[-200_000:]
        if any(m in logs for m in ("MemoryError", "bad_alloc", "Cannot allocate memory", "out of memory")):
            cap = as_limit_bytes or spec.get("as_limit_bytes")
            result["status"] = f"failed: MemoryError in the Milvus Lite server (RLIMIT_AS {round(cap / MB) if cap else '-'} MB; see log) <- " + str(result["status"])[8:]
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["tree_peak_rss_mb_sampled"] = round(tree_peak / MB, 1)
    result["limits"] = {"timeout_s": timeout_s, "rss_cap_mb": round(rss_cap_bytes / MB), "rlimit_as_mb": round(as_limit_bytes / MB) if as_limit_bytes else None}
    if leftovers:
        result["leftover_processes_killed"] = leftovers
    with contextlib.suppress(Exception):
        result["log_tail"] = log_path.read_text()[-1500:] if not str(result["status"]).startswith("ok") else None
    return result


def print_table(runs: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="FaceSearch search benchmark (synthetic face-like vectors; noisy shared machine)", show_lines=False)
    cols = ["N", "dim", "backend", "status", "nlist", "nprobe", "recall@10", "p50 ms", "p95 ms", "p99 ms", "batched QPS", "insert s", "index s", "proc RSS MB", "server RSS MB"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("backend", "status") else "right", overflow="fold")

    def f(v: Any, nd: int = 1) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.{nd}f}"
        return str(v)

    for r in runs:
        single = r.get("single") or {}
        t.add_row(
            f(r.get("size")), f(r.get("dim")), r["backend"], str(r.get("status"))[:60], f(r.get("nlist")), f(r.get("nprobe")),
            f(r.get("recall"), 4), f(single.get("p50_ms"), 2), f(single.get("p95_ms"), 2), f(single.get("p99_ms"), 2),
            f(r.get("batched_qps"), 0), f(r.get("insert_s")), f(r.get("index_build_s")), f(r.get("process_peak_rss_mb"), 0), f(r.get("server_peak_rss_mb"), 0),
        )
    Console(width=200).print(t)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_worker"]:
        spec = json.loads(Path(argv[1]).read_text())
        import logging

        logging.basicConfig(level=logging.WARNING)
        return Worker(spec).run()

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=128, choices=[128, 512])
    ap.add_argument("--backends", nargs="+", default=list(ALL_BACKENDS), choices=ALL_BACKENDS)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "search.json")
    ap.add_argument("--nlist", type=int, default=None, help="default: power of two at or below 4*sqrt(N) (FaceSearch's sweep centre)")
    ap.add_argument("--nprobe-grid", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128, 256])
    ap.add_argument("--min-recall", type=float, default=0.99)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=1000, help="held-out queries (also the batch size of the batched QPS call)")
    ap.add_argument("--latency-queries", type=int, default=200, help="sequential one-vector calls timed after warm-up")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch-repeats", type=int, default=3)
    ap.add_argument("--faces-per-identity", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--insert-batch", type=int, default=512, help="milvus.insert_batch for FaceStore.upsert (FaceSearch's default 512)")
    ap.add_argument("--records-chunk", type=int, default=10_000, help="FaceRecords built per FaceStore.upsert call")
    ap.add_argument("--timeout-s", type=float, default=900, help="per backend and size")
    ap.add_argument("--rss-cap-gb", type=float, default=8.0, help="the worker's process tree is killed above this RSS")
    ap.add_argument("--lite-as-limit-gb", type=float, default=8.0, help="RLIMIT_AS for Milvus Lite processes (0 = none)")
    ap.add_argument("--rpc-timeout-s", type=float, default=300)
    ap.add_argument("--standalone-consistency", nargs="*", default=["Session", "Bounded"], help="extra search consistency levels measured on the standalone server (FaceSearch's collections are Strong)")
    ap.add_argument("--no-flush", action="store_true", help="skip the flush after inserting (FaceSearch never flushes today): Lite then brute-forces its memtable in Python")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch dir (default: a new temp dir, removed afterwards)")
    ap.add_argument("--keep-workdir", action="store_true")
    args = ap.parse_args(argv)

    from bench.vectors import FaceLikeVectors, fit

    work_root = Path(tempfile.mkdtemp(prefix="facesearch-bench-", dir=args.workdir))
    out: dict[str, Any] = {
        "benchmark": "facesearch search: FaceStore.search on embedded Milvus candidates vs faiss vs numpy",
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "caveat": CAVEAT,
        "command": " ".join([Path(sys.executable).name, "bench/bench_search.py", *argv]),
        "machine": {"cpus": os.cpu_count(), "mem_gb": round(psutil.virtual_memory().total / 1024**3, 1), "platform": platform.platform(), "loadavg_start": loadavg()},
        "versions": versions(),
        "config": {
            "k": args.k, "queries": args.queries, "latency_queries": args.latency_queries, "warmup": args.warmup,
            "batch_repeats": args.batch_repeats, "nprobe_grid": args.nprobe_grid, "min_recall": args.min_recall,
            "nlist_rule": "--nlist" if args.nlist else "power of two at or below 4*sqrt(N)", "index": "IVF_FLAT, L2",
            "insert": f"FaceStore.upsert(FaceRecord...) with milvus.insert_batch={args.insert_batch}, " + ("NO flush" if args.no_flush else "then MilvusClient.flush, then (servers) wait for indexing + manual compaction + the loaded segments to equal the persistent ones"),
            "index_build": "FaceStore.rebuild_index (release, drop, create, describe_index check, load) + wait until describe_index reports all rows indexed",
            "queries_kind": "held-out: fresh faces (new noise) of stored identities, never stored themselves",
            "ground_truth": "numpy exact L2 top-k over all stored vectors",
            "search_path": "FaceStore.search (pymilvus MilvusClient.search with FaceSearch's output fields) for Milvus backends",
            "rss_cap_gb": args.rss_cap_gb, "lite_rlimit_as_gb": args.lite_as_limit_gb, "timeout_s": args.timeout_s,
        },
        "runs": [],
    }
    print(f"fitting the generator for dim {args.dim} ...", flush=True)
    report = fit(args.dim, seed=args.seed)
    out["vectors"] = report.as_dict()
    print(f"  rank {report.params.rank}, max |target - achieved| = {report.max_abs_error:.4f}: {report.achieved}", flush=True)
    gen = FaceLikeVectors(report.params)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def dump() -> None:
        out["machine"]["loadavg_end"] = loadavg()
        args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")

    try:
        for size in args.sizes:
            data_dir = work_root / f"data_{size}"
            data_dir.mkdir()
            t0 = time.perf_counter()
            ds = gen.dataset(size, faces_per_identity=args.faces_per_identity, n_queries=args.queries)
            gen_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            truth = exact_top_k(ds["vectors"], ds["queries"], args.k)
            truth_s = time.perf_counter() - t0
            for key in ("vectors", "identity", "queries"):
                np.save(data_dir / f"{key}.npy", ds[key])
            np.save(data_dir / "truth.npy", truth)
            del ds
            nlist = args.nlist or nlist_for(size)
            print(f"\nN={size} dim={args.dim} nlist={nlist}: data generated in {gen_s:.1f} s, exact top-{args.k} in {truth_s:.1f} s", flush=True)
            for backend in args.backends:
                spec = {
                    "backend": backend, "size": size, "dim": args.dim, "k": args.k, "nlist": nlist, "nprobe_grid": args.nprobe_grid,
                    "min_recall": args.min_recall, "latency_queries": args.latency_queries, "warmup": args.warmup,
                    "batch_repeats": args.batch_repeats, "insert_batch": args.insert_batch, "records_chunk": args.records_chunk,
                    "rpc_timeout_s": args.rpc_timeout_s, "data_dir": str(data_dir), "work_dir": str(work_root / f"run_{size}"),
                    "result_path": str(work_root / f"result_{size}_{backend}.json"),
                }
                lite_cap = int(args.lite_as_limit_gb * 1024**3) if args.lite_as_limit_gb else None
                spec["as_limit_bytes"] = lite_cap if backend == "lite-server" else None  # applied to the server process
                spec["consistency_variants"] = args.standalone_consistency if backend == "standalone" else []
                spec["flush"] = not args.no_flush
                print(f"  {backend:<12} ...", end="", flush=True)
                res = run_worker_process(spec, args.timeout_s, int(args.rss_cap_gb * 1024**3), lite_cap if backend == "lite" else None)
                res.update({"size": size, "dim": args.dim, "label": BACKEND_LABELS[backend]})
                res.setdefault("nlist", nlist)
                if res.get("status") == "ok":
                    res.pop("traceback", None)
                out["runs"].append(res)
                for level, var in (res.get("variants") or {}).items():
                    out["runs"].append({
                        **{k: res.get(k) for k in ("size", "dim", "nlist", "insert_s", "index_build_s", "process_peak_rss_mb", "server_peak_rss_mb", "status")},
                        **var,
                        "backend": f"{backend}[{level}]",
                        "label": f"{BACKEND_LABELS[backend]}, FaceStore.search with consistency_level={level} passed to MilvusClient.search",
                        "variant_of": backend,
                    })
                single = res.get("single") or {}
                print(
                    f" {res['status']}: nprobe={res.get('nprobe')} recall={res.get('recall')} p50={single.get('p50_ms')} ms "
                    f"p99={single.get('p99_ms')} ms batched={res.get('batched_qps')} qps ({res['wall_s']} s)",
                    flush=True,
                )
                dump()
            if not args.keep_workdir:
                shutil.rmtree(work_root / f"run_{size}", ignore_errors=True)
    finally:
        dump()
        if not args.keep_workdir:
            shutil.rmtree(work_root, ignore_errors=True)
    print_table(out["runs"])
    print(f"\nwrote {args.out}\n{CAVEAT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
