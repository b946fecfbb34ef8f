"""`facesearch store start|status|stop`: a detached local Milvus that several processes share at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clihelpers import Cli

pytestmark = [pytest.mark.integration, pytest.mark.milvus_server]

ROOT = Path(__file__).resolve().parents[2]


def test_store_start_is_shared_by_concurrent_processes_and_stops(tmp_path: Path, samples: Path):
    server_dir = tmp_path / "server"
    store = Cli({"uri": "unused.db", "db_name": ""})
    opts = ("--set", f"milvus.server_dir={server_dir}")
    try:
        started = store("store", "start", "--json", settings_args=opts)
        assert started.exit_code == 0, started.stderr
        doc = started.json
        assert doc["running"] and doc["uri"].startswith("http://127.0.0.1:")
        again = store("store", "start", "--json", settings_args=opts).json
        assert again["pid"] == doc["pid"]  # idempotent: found, not started twice
        assert store("store", "status", "--json", settings_args=opts).json["uri"] == doc["uri"]

        # three processes write and read the same store at once: two index runs and a stats loop
        sets = ["--set", f"milvus.uri={doc['uri']}", "--set", "encoder.backend=dlib", "--set", "index.nlist=16",
                "--set", "milvus.search_consistency=Strong"]
        procs = [
            subprocess.Popen([sys.executable, "-m", "facesearch.cli", *sets, "index", str(samples / "johns" / person), "--json"],
                             cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for person in ("John_Simm", "John_Salley", "John_Savage")
        ]
        outputs = [p.communicate(timeout=600) for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0], [o[1][-1500:] for o in outputs]
        faces = sum(json.loads(out)["faces_indexed"] for out, _ in outputs)
        stats = subprocess.run([sys.executable, "-m", "facesearch.cli", *sets, "stats", "--json"],
                               cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert stats.returncode == 0, stats.stderr[-1500:]
        assert json.loads(stats.stdout)["faces"] == faces == 33
    finally:
        stopped = store("store", "stop", "--json", settings_args=opts)
    # Milvus 2.3.5 never finished a graceful stop by itself; with gracefulStopTimeout 5 it quits before our kill
    assert stopped.json == {"stopped": True, "killed": False}, stopped.stderr
    assert not Path(f"/proc/{doc['pid']}").exists() or Path(f"/proc/{doc['pid']}/stat").read_text().split(") ", 1)[1][0] == "Z", (
        Path(f"/proc/{doc['pid']}/stat").read_text()
    )
    assert store("store", "status", "--json", settings_args=opts).json["running"] is False
