"""Cold query commands as users run them: a fresh ``facesearch`` process with default settings.

What each one imports is what a cold start costs (issue 10: identify <= 2 s, stats <= 1 s; timings are
in bench/bench_ingest.py, not here). pandas is not in the lists: Milvus Lite 3.2 runs it on every segment
load (pyarrow's ``to_numpy`` initialises its pandas support), so no query on Lite can avoid it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# the MLOps stack, torch (neither YuNet nor SFace needs it) and scipy (pymilvus probes scipy.sparse on a first search)
NEVER = ["torch", "mlflow", "prefect", "great_expectations", "dask", "dvc", "sklearn", "scipy", "fastapi"]
NO_MODELS = ["cv2", "openvino", "PIL", "facesearch.models.encoders", "facesearch.ingest.indexer"]

# The real entry point (facesearch.cli:main), plus an atexit hook that records the modules the command
# imported; registered first, it runs last: after the command's own exit handlers.
NO_FORK = "import facesearch.serve.forked_embed as forked; forked.fork_is_safe = lambda: False\n"  # the thread path
WRAPPER = (
    "import atexit, json, sys\n"
    "watch, out = json.loads(sys.argv.pop(1)), sys.argv.pop(1)\n"
    "atexit.register(lambda: open(out, 'w').write(json.dumps(sorted(m for m in watch if m in sys.modules))))\n"
    "sys.argv[0] = 'facesearch'\n"
    "from facesearch.cli import main\n"
    "main()\n"
)


def facesearch(
    tmp_path: Path, target: dict[str, str], *args: str, watch: list[str] | None = None, env: dict[str, str] | None = None, prelude: str = ""
) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run ``facesearch ARGS`` in a new process; returns it and which of ``watch`` it had imported at exit."""
    env = {**os.environ, **(env or {}), "FACESEARCH__MILVUS__URI": target["uri"], "FACESEARCH__MILVUS__DB_NAME": target["db_name"]}
    env["FACESEARCH__MILVUS__SEARCH_CONSISTENCY"] = "Strong"  # searched right after the index process wrote
    record = tmp_path / "imported.json"
    record.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", prelude + WRAPPER, json.dumps(watch or []), str(record), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert record.exists(), f"the command's atexit handlers did not run\n{proc.stderr[-2000:]}"
    return proc, json.loads(record.read_text())


def test_cold_query_commands_import_only_what_they_use(tmp_path: Path, milvus_target: dict[str, str], johns: Path, samples: Path):
    photos = tmp_path / "photos"
    for person in ("John_Simm", "John_Salley"):
        (photos / person).mkdir(parents=True)
        for jpg in sorted((johns / person).glob("*.jpg"))[:4]:
            (photos / person / jpg.name).write_bytes(jpg.read_bytes())
    indexed, _ = facesearch(tmp_path, milvus_target, "index", str(photos), "--identity-from-folder", "--json")
    assert indexed.returncode == 0, indexed.stderr[-3000:]
    assert json.loads(indexed.stdout)["faces_indexed"] == 8

    query = min((photos / "John_Simm").glob("*.jpg"))
    identify, imported = facesearch(tmp_path, milvus_target, "identify", str(query), "--json", watch=NEVER)
    assert identify.returncode == 0, identify.stderr[-3000:]
    assert [f["identity"] for f in json.loads(identify.stdout)["faces"]] == ["John_Simm"]
    assert imported == []
    # the embedding ran in a forked child (a fresh process has one thread); its answer is this process's (a thread)
    forked, _ = facesearch(tmp_path, milvus_target, "identify", str(query), "--json", env={"FACESEARCH__LOGGING__LEVEL": "DEBUG"})
    assert "embedding the query in forked child" in " ".join(forked.stderr.split()), forked.stderr[-3000:]  # rich wraps lines
    threaded, _ = facesearch(tmp_path, milvus_target, "identify", str(query), "--json", prelude=NO_FORK, env={"FACESEARCH__LOGGING__LEVEL": "DEBUG"})
    assert threaded.returncode == 0 and "forked child" not in " ".join(threaded.stderr.split()), threaded.stderr[-3000:]
    here, there = json.loads(threaded.stdout)["faces"], json.loads(forked.stdout)["faces"]
    assert [(f["identity"], f["bbox"]) for f in here] == [(f["identity"], f["bbox"]) for f in there]
    assert here[0]["distance"] == pytest.approx(there[0]["distance"], abs=1e-4)

    stats, imported = facesearch(tmp_path, milvus_target, "stats", "--json", watch=NEVER + NO_MODELS)
    assert stats.returncode == 0, stats.stderr[-3000:]
    assert json.loads(stats.stdout)["faces"] == 8
    assert imported == []

    # an error still leaves through the same exit: one line, the command's exit status, exit handlers run
    no_face, _ = facesearch(tmp_path, milvus_target, "identify", str(samples / "voc_groups" / "dogs.jpg"), "--json")
    assert no_face.returncode == 2 and "no face found" in no_face.stderr and "Traceback" not in no_face.stderr
    assert no_face.stdout == ""


def test_connecting_to_lite_opens_no_collection(tmp_path: Path):
    """Milvus Lite answers list_collections by opening every collection (all its segments): connecting must not ask it.

    A new process, because Lite keeps a collection open for the rest of the process once it has opened it.
    """
    uri = str(tmp_path / "milvus" / "faces.db")
    code = (
        "import sys\n"
        "from facesearch.settings import load_settings\n"
        "from facesearch.store import FaceStore\n"
        "settings = load_settings(overrides={'milvus': {'uri': sys.argv[1]}})\n"
        "with FaceStore(settings.milvus) as store:\n"
        "    for name in sys.argv[2:]:\n"
        "        store.ensure_collection(name, 8, settings.index)\n"
        "    print(sorted(store.list_collections()))\n"
    )
    made = subprocess.run([sys.executable, "-c", code, uri, "a", "b"], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert made.returncode == 0, made.stderr[-3000:]
    assert made.stdout.strip() == "['a', 'b']"

    probe = (
        "import sys\n"
        "from facesearch.settings import load_settings\n"
        "from facesearch.store import FaceStore\n"
        "from milvus_lite.server_manager import server_manager_instance\n"
        "settings = load_settings(overrides={'milvus': {'uri': sys.argv[1]}})\n"
        "with FaceStore(settings.milvus) as store:\n"
        "    (_, db, _), = server_manager_instance._servers.values()\n"  # Lite's open collections (private, but the point)
        "    print(len(db._collections), store.has_collection('a'))\n"
    )
    opened = subprocess.run([sys.executable, "-c", probe, uri], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert opened.returncode == 0, opened.stderr[-3000:]
    assert opened.stdout.split() == ["0", "True"]
