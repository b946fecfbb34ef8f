"""Process helpers for the benchmarks: servers we start and always stop, RSS sampling, memory caps.

Everything here only touches processes this code started (by pid) and only talks to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
log = logging.getLogger("bench")

MB = 1024 * 1024


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening on 127.0.0.1:{port}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s:.0f} s")


def address_space_limit(limit_bytes: int | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that caps the child's address space (RLIMIT_AS); None when no cap."""
    if not limit_bytes:
        return None

    def _apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (int(limit_bytes), int(limit_bytes)))

    return _apply


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (0 if it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


class PeakSampler:
    """Samples the tree RSS of ``pid`` every ``interval_s`` in a daemon thread; ``peak`` in bytes."""

    def __init__(self, pid_fn: Callable[[], int | None], interval_s: float = 0.1) -> None:
        self._pid_fn = pid_fn
        self.interval_s = interval_s
        self.peak = 0
        self.last = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            pid = self._pid_fn()
            if pid:
                self.last = tree_rss(pid)
                self.peak = max(self.peak, self.last)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def kill_tree(pid: int, sig_first: int = signal.SIGTERM, grace_s: float = 10.0) -> None:
    """Signal a process we started and its descendants; SIGKILL whatever is left after ``grace_s``."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = [root]
    with contextlib.suppress(psutil.Error):
        procs += root.children(recursive=True)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(sig_first)
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(alive, timeout=5)


def kill_processes_using(path: Path) -> list[int]:
    """Kill processes of this user whose command line or cwd is under ``path`` (a dir the bench created)."""
    path_s = str(Path(path).resolve())
    me = os.getpid()
    killed = []
    for p in psutil.process_iter(["pid", "cmdline", "cwd", "uids"]):
        try:
            if p.info["pid"] == me or (p.info["uids"] and p.info["uids"].real != os.getuid()):
                continue
            cmd = " ".join(p.info["cmdline"] or [])
            if path_s in cmd or (p.info["cwd"] or "").startswith(path_s):
                kill_tree(p.info["pid"], signal.SIGKILL, grace_s=5)
                killed.append(p.info["pid"])
        except psutil.Error:
            continue
    return killed


class LiteServer:
    """``milvus-lite server --data-dir DIR --host 127.0.0.1 --port P`` as a child process."""

    def __init__(self, data_dir: Path, log_file: Path, as_limit_bytes: int | None = None, max_workers: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.log_file = Path(log_file)
        self.as_limit_bytes = as_limit_bytes
        self.max_workers = max_workers
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout_s: float = 60) -> LiteServer:
        exe = VENV_BIN / "milvus-lite"
        cmd = [str(exe), "server", "--data-dir", str(self.data_dir), "--host", "127.0.0.1", "--port", str(self.port)]
        if self.max_workers:
            cmd += ["--max-workers", str(self.max_workers)]
        self._log = open(self.log_file, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=address_space_limit(self.as_limit_bytes))
        try:
            wait_port(self.port, timeout_s, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> int | None:
        """SIGINT (graceful: the server closes its DB), then SIGKILL after 15 s. Returns the exit code."""
        proc, self.proc = self.proc, None
        code = None
        if proc is not None:
            if proc.poll() is None:
                kill_tree(proc.pid, signal.SIGINT, grace_s=15)
            with contextlib.suppress(Exception):
                code = proc.wait(timeout=5)
        if getattr(self, "_log", None):
            self._log.close()
        return code

    def __enter__(self) -> LiteServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class StandaloneServer:
    """Milvus 2.3.5 standalone (PyPI ``milvus``), via FaceSearch's own ``LocalMilvusServer``.

    ``LocalMilvusServer`` runs ``DIR/bin/milvus run standalone`` as our direct child (no wrapper
    process); ``stop`` here also kills any descendant and anything left running from ``DIR``.
    """

    def __init__(self, base_dir: Path, stop_timeout_s: float = 5.0) -> None:
        from facesearch.store.local_server import LocalMilvusServer

        self.base_dir = Path(base_dir)
        self._server = LocalMilvusServer(self.base_dir, start_timeout_s=180, stop_timeout_s=stop_timeout_s)
        self.start_s: float | None = None

    @property
    def uri(self) -> str:
        return self._server.uri

    @property
    def pid(self) -> int | None:
        return self._server.pid

    def start(self) -> StandaloneServer:
        t0 = time.perf_counter()
        try:
            self._server.start()
        except BaseException:
            self.stop()
            raise
        self.start_s = time.perf_counter() - t0
        return self

    def stop(self) -> None:
        pid = self._server.pid
        children: list[psutil.Process] = []
        if pid:
            with contextlib.suppress(psutil.Error):
                children = psutil.Process(pid).children(recursive=True)
        try:
            self._server.stop()
        finally:
            for c in children:
                with contextlib.suppress(psutil.Error):
                    c.kill()
            kill_processes_using(self.base_dir)

    def __enter__(self) -> StandaloneServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

