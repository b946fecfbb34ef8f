"""A local Milvus standalone server (the PyPI ``milvus`` 2.3.5 wheel ships the binary), started and stopped by us.

Used by the real-server test session and the benchmarks, and by anyone who wants a server on one
machine without Docker: ``with LocalMilvusServer(Path("data/milvus-server")) as server: server.uri``.
Ports are picked free on 127.0.0.1, the embedded etcd's included (the wheel's template leaves
etcd on its fixed 2379/2380, so two servers on one machine collide; we point etcd at a config
file with free ports). ``stop`` terminates the ``milvus run standalone`` process (waiting for a
graceful exit, then killing it), so no process outlives the context.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from facesearch.errors import StoreUnavailableError

log = logging.getLogger(__name__)


ETCD_BLOCK = "  use:\n    embed: true"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_config(base_dir: Path) -> Any:
    """The wheel's config, with the embedded etcd's client and peer ports made configurable."""
    import milvus
    from milvus import MilvusServerConfig

    template = (Path(milvus.__file__).parent / "data" / "config.yaml.template").read_text()
    if ETCD_BLOCK not in template:  # pragma: no cover - a different wheel layout
        raise RuntimeError("unexpected milvus config template: cannot configure the embedded etcd")
    patched = base_dir / "config.yaml.template"
    patched.write_text(template.replace(ETCD_BLOCK, ETCD_BLOCK + "\n  config:\n    path: {{ etcd_config_path }}"))

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

    config = _Config(template=str(patched))
    config.glog_conf_file = str(Path(milvus.__file__).parent / "data" / "glog.conf")  # only set for the default template
    config.configurable_items["etcd_config_path"] = [str, str(base_dir / "configs" / "embed_etcd.yaml")]
    return config


class LocalMilvusServer:
    def __init__(self, base_dir: Path, start_timeout_s: float = 180.0, stop_timeout_s: float = 20.0) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._server = None
        self.port: int | None = None

    @property
    def uri(self) -> str:
        if self.port is None:
            raise StoreUnavailableError("local Milvus server is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        proc = getattr(self._server, "server_proc", None)
        return proc.pid if proc is not None else None

    def start(self) -> LocalMilvusServer:
        try:
            from milvus import MilvusServer
        except ImportError as exc:  # pragma: no cover - the package is in requirements/lock.txt
            raise StoreUnavailableError("the `milvus` package (Milvus standalone binary) is not installed") from exc
        self.base_dir.mkdir(parents=True, exist_ok=True)
        server = MilvusServer(_server_config(self.base_dir), wait_for_started=False)
        server.set_base_dir(str(self.base_dir))
        started = time.monotonic()
        server.start()
        self._server = server
        try:
            server.wait_started(timeout=int(self.start_timeout_s * 1000))
        except Exception as exc:
            self.stop()
            raise StoreUnavailableError(f"local Milvus server in {self.base_dir} did not start: {exc} (logs in {self.base_dir / 'logs'})") from exc
        self.port = int(server.config.configurable_items["proxy_port"][1])
        log.info("Milvus standalone started on %s in %.1f s (pid %s, data %s)", self.uri, time.monotonic() - started, self.pid, self.base_dir)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        proc = server.server_proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("Milvus (pid %s) did not stop in %.0f s: killing it", proc.pid, self.stop_timeout_s)
                proc.kill()
                proc.wait(timeout=10)
        server.server_proc = None
        for handle in server.proc_fds.values():
            handle.close()
        server.proc_fds.clear()
        self.port = None

    def __enter__(self) -> LocalMilvusServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
