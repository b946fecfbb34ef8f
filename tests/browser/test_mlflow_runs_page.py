"""The MLflow runs page as a user opens it (issue 12.3): the sweep run's Dataset column shows the DVC version."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.test_search_page import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium: apt-get install -y chromium"),
]

MD5 = "3f2a9c41d07b5e6a8c1f0e2d4b6a8c0e"  # a DVC .dir md5 (without the suffix): the dataset version


@pytest.fixture(scope="module")
def mlflow_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """One sweep logged by FaceSearch's own code into SQLite, then `mlflow server` on it (one process, as `make mlflow-ui`)."""
    import socket

    from facesearch.pipeline.sweep import SweepResult, Trial
    from facesearch.pipeline.tracking import DatasetRef, log_sweep
    from facesearch.settings import TrackingSettings

    root = tmp_path_factory.mktemp("mlflow-ui")
    db = root / "mlflow.db"
    tracking = TrackingSettings(mlflow_uri=f"sqlite:///{db}", artifact_root=root / "artifacts")
    trials = [Trial(nlist, nprobe, 1.0 - 0.1 / nprobe, 0.5, 0.6 + nprobe / 10, 900.0, 0.2) for nlist in (4, 8) for nprobe in (1, 2, 4)]
    result = SweepResult("face_search__sface__3f2a9c41__0a1b2c3d", 120, 128, 10, 20, [4, 8], [1, 2, 4], trials)
    runs = log_sweep(tracking, result, {"dataset_version": MD5, "encoder": "sface"}, dataset=DatasetRef("data/images", MD5, "dvc-remote"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("mlflow server did not answer /health in 180 s")
        yield url, runs.experiment_id
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_runs_table_dataset_column_shows_the_dvc_version(mlflow_ui, test_output: Path):
    from playwright.sync_api import sync_playwright

    url, experiment = mlflow_ui
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.set_default_timeout(TIMEOUT_MS * 2)
        page.goto(f"{url}/#/experiments/{experiment}/runs")
        page.get_by_text("sweep face_search__sface__3f2a9c41__0a1b2c3d").first.wait_for()
        page.get_by_text("Dataset", exact=True).first.wait_for()  # the runs table's Dataset column header
        cell = page.get_by_text(f"data/images ({MD5})").first  # MLflow writes `name (digest)`: the DVC .dir md5
        cell.wait_for()
        page.screenshot(path=str(test_output / "mlflow_runs_page.png"), full_page=True)
        header = page.get_by_text("Dataset", exact=True).first.bounding_box()
        box = cell.bounding_box()
        assert header and box and abs(box["x"] - header["x"]) < 60  # the digest sits in the Dataset column
        browser.close()
