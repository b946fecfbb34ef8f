"""A local Milvus standalone server (the PyPI ``milvus`` 2.3.5 wheel ships the binary), started and stopped by us.

Two ways to use it:
* ``with LocalMilvusServer(dir) as server: server.uri`` - lives as long as the block (tests, benchmarks);
* ``facesearch store start`` - detached (its own session, survives the command), recorded in
  ``<dir>/facesearch-server.json`` so ``store status`` / ``store stop`` and later commands find it.

Ports are picked free on 127.0.0.1 (19530 first, so the URI is stable), the embedded etcd's
included: the wheel's template leaves etcd on its fixed 2379/2380, so two servers on one machine
collide; we point etcd at a config file with free ports. ``stop`` terminates the
``milvus run standalone`` process, waiting for a graceful exit, then killing it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from facesearch.errors import StoreUnavailableError

log = logging.getLogger(__name__)

ETCD_BLOCK = "  use:\n    embed: true"
STATE_FILE = "facesearch-server.json"
# Measured on 2.3.5 (2026-12-02): on SIGTERM the coordinators stop before the query node, which then retries
# against them until killed, and a restart waits for the dead process's etcd sessions to expire (ttl 30 s):
# stop + start took 20 + 47 s. Milvus' own force-quit after 5 s and a 10 s session ttl: 5 + 15 s.
# Milvus sizes a segment by the schema's largest possible row (image_path's max_length 4096 and the paths array),
# so 512 MB held only ~60k faces: 100k faces were 2 sealed segments (1M ~17), and every search pays per segment.
# 1024 MB is Milvus 2.4's default; at 100k (one segment) the server's CPU per search fell 5.30 -> 4.54 ms and p50
# 5.99 -> 5.77 ms (four standalones, searches interleaved, 2026-12-02). It applies to segments sealed from now on.
SERVER_SETTINGS = {
    "    ttl: 30 # ttl value when session granting a lease to register service": "    ttl: 10 # ttl value when session granting a lease to register service",
    "  gracefulStopTimeout: 1800 #": "  gracefulStopTimeout: 5 #",
    "    maxSize: 512 # Maximum size of a segment in MB": "    maxSize: 1024 # Maximum size of a segment in MB",
}


@dataclass(frozen=True)
class ServerState:
    pid: int
    port: int
    metrics_port: int
    base_dir: str

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_config(base_dir: Path) -> Any:
    """The wheel's config, with the embedded etcd's client and peer ports made configurable and SERVER_SETTINGS applied.

    MilvusServerConfig reads its template when constructed: a change must be in the file before that."""
    import milvus
    from milvus import MilvusServerConfig

    template = (Path(milvus.__file__).parent / "data" / "config.yaml.template").read_text()
    if ETCD_BLOCK not in template:  # pragma: no cover - a different wheel layout
        raise RuntimeError("unexpected milvus config template: cannot configure the embedded etcd")
    template = template.replace(ETCD_BLOCK, ETCD_BLOCK + "\n  config:\n    path: {{ etcd_config_path }}")
    for default, ours in SERVER_SETTINGS.items():
        if template.count(default) != 1:  # pragma: no cover - a different wheel
            raise RuntimeError(f"unexpected milvus config template: {default.strip()!r} is not there once")
        template = template.replace(default, ours)
    patched = base_dir / "config.yaml.template"
    patched.write_text(template)

    class _Config(MilvusServerConfig):  # type: ignore[misc]
        def write_config(self) -> None:
            super().write_config()
            client, peer = self.get("etcd_port"), _free_port()
            Path(self.get("etcd_config_path")).write_text(
                f"name: facesearch\n"
                f"listen-client-urls: http://127.0.0.1:{client}\n"
                f"advertise-client-urls: http://127.0.0.1:{client}\n"
                f"listen-peer-urls: http://127.0.0.1:{peer}\n"
                f"initial-advertise-peer-urls: http://127.0.0.1:{peer}\n"
                f"initial-cluster: facesearch=http://127.0.0.1:{peer}\n"
            )

    config = _Config(template=str(patched), data_dir=str(base_dir))
    config.glog_conf_file = str(Path(milvus.__file__).parent / "data" / "glog.conf")  # only set for the default template
    config.configurable_items["etcd_config_path"] = [str, str(base_dir / "configs" / "embed_etcd.yaml")]
    return config


def _healthy(metrics_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=2) as response:
            return "OK" in response.read().decode()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    """Running (not a zombie). Reaps the process if it is our own exited child."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: the usual case for a server started by an earlier command
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


class LocalMilvusServer:
    def __init__(self, base_dir: Path, start_timeout_s: float = 180.0, stop_timeout_s: float = 20.0) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._proc: subprocess.Popen | None = None
        self.state: ServerState | None = None

    @property
    def uri(self) -> str:
        if self.state is None:
            raise StoreUnavailableError("local Milvus server is not running")
        return self.state.uri

    @property
    def port(self) -> int | None:
        return self.state.port if self.state else None

    @property
    def pid(self) -> int | None:
        return self.state.pid if self.state else None

    @property
    def state_file(self) -> Path:
        return self.base_dir / STATE_FILE

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, detach: bool = False) -> LocalMilvusServer:
        """Launch ``milvus run standalone`` and wait for /healthz. ``detach``: own session, state file written."""
        try:
            import milvus
        except ImportError as exc:  # pragma: no cover - the package is in requirements/lock.txt
            raise StoreUnavailableError("the `milvus` package (Milvus standalone binary) is not installed") from exc
        self.base_dir.mkdir(parents=True, exist_ok=True)
        config = _server_config(self.base_dir)
        started = time.monotonic()
        self._resolve_ports(config)
        milvus._initialize_data_files(str(self.base_dir))  # unpacks the binary once (~500 MB)
        metrics_port = _free_port()
        env = {
            **os.environ,
            "DEPLOY_MODE": "STANDALONE",
            "METRICS_PORT": str(metrics_port),
            "MILVUS_RUN_DIR": str(self.base_dir / "run"),
            "LD_LIBRARY_PATH": f"{self.base_dir / 'bin'}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        }
        logs = self.base_dir / "logs"
        logs.mkdir(exist_ok=True)
        with open(logs / "milvus-stdout.log", "ab") as out, open(logs / "milvus-stderr.log", "ab") as err:
            self._proc = subprocess.Popen(
                [str(self.base_dir / "bin" / "milvus"), "run", "standalone"],
                cwd=self.base_dir, env=env, stdout=out, stderr=err, start_new_session=detach,
            )
        self.state = ServerState(self._proc.pid, int(config.get("proxy_port")), metrics_port, str(self.base_dir))
        deadline = time.monotonic() + self.start_timeout_s
        while not _healthy(metrics_port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                why = f"exited with {self._proc.returncode}" if self._proc.poll() is not None else f"not healthy after {self.start_timeout_s:.0f} s"
                self.stop()
                raise StoreUnavailableError(f"local Milvus server in {self.base_dir} did not start: {why} (logs in {logs})")
            time.sleep(0.5)
        if detach:
            self.state_file.write_text(json.dumps(asdict(self.state)))
            self._proc = None  # not ours to reap: it outlives this process
        log.info("Milvus standalone started on %s in %.1f s (pid %s, data %s)", self.uri, time.monotonic() - started, self.pid, self.base_dir)
        return self

    def stop(self) -> bool:
        """Terminate the server (graceful, then SIGKILL after ``stop_timeout_s``); a detached one is found by its state file.

        Returns False when it had to be killed (Milvus quits by itself ``gracefulStopTimeout`` = 5 s after SIGTERM)."""
        if self.state is None and self._proc is None and self.state_file.exists():
            self.state = ServerState(**json.loads(self.state_file.read_text()))
        state, self.state = self.state, None
        proc, self._proc = self._proc, None
        exited = True
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=self.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    log.info("Milvus (pid %s) did not stop in %.0f s: killing it", proc.pid, self.stop_timeout_s)
                    proc.kill()
                    proc.wait(timeout=10)
                    exited = False
        elif state is not None and _alive(state.pid):
            os.kill(state.pid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout_s
            while _alive(state.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(state.pid):
                log.info("Milvus (pid %s) did not stop in %.0f s: killing it", state.pid, self.stop_timeout_s)
                os.kill(state.pid, signal.SIGKILL)
                exited = False
                deadline = time.monotonic() + 10
                while _alive(state.pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
        self.state_file.unlink(missing_ok=True)
        return exited

    def running(self) -> ServerState | None:
        """The detached server recorded in the state file, if it is alive and healthy."""
        if not self.state_file.exists():
            return None
        state = ServerState(**json.loads(self.state_file.read_text()))
        if _alive(state.pid) and _healthy(state.metrics_port):
            self.state = state
            return state
        return None

    @contextmanager
    def _start_lock(self) -> Iterator[None]:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        with open(self.base_dir / ".start.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    @property
    def ports_file(self) -> Path:
        return self.base_dir / "ports.json"

    def _resolve_ports(self, config: Any) -> None:
        """Pick the ports (writes configs/milvus.yaml and the etcd config): the previous run's when they are free.

        The components find each other through sessions kept in the embedded etcd, which outlive a stop. A
        restart on fresh ports let a component dial a stale session's address that another component (of
        this or another Milvus) now held, and the binary aborted ("unknown service milvus.proto.query.QueryCoord").
        """
        saved = json.loads(self.ports_file.read_text()) if self.ports_file.is_file() else {}
        if saved:
            config.configs.update(saved)
            try:
                config.resolve()
                return
            except RuntimeError as exc:  # one of them is taken now: all fresh
                log.info("previous ports of %s not free (%s); picking new ones", self.base_dir, exc)
                config.cleanup_listen_ports()
                for key in saved:
                    config.configs.pop(key, None)
        config.resolve()  # picks free ports
        ports = {key: int(config.get(key)) for key in config.configurable_items if key.endswith("_port")}
        self.ports_file.write_text(json.dumps(ports))

    def ensure_running(self) -> ServerState:
        """Start a detached server unless one is already running for this directory (safe to race)."""
        with self._start_lock():
            state = self.running()
            if state is not None:
                return state
            try:
                self.start(detach=True)
            except StoreUnavailableError as exc:
                if "exited" not in str(exc):
                    raise
                # ports are picked free, then released until the binary binds them: a Milvus starting at the
                # same moment can take one (seen: "unknown service milvus.proto.query.QueryCoord"); pick again
                log.warning("%s; starting it once more on fresh ports", exc)
                self.ports_file.unlink(missing_ok=True)
                self.start(detach=True)
            assert self.state is not None
            return self.state

    def __enter__(self) -> LocalMilvusServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
