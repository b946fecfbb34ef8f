"""Dataset versions with DVC: ``data.dvc`` at the project root tracks ``paths.images_dir``.

The version is the ``.dir`` md5 DVC records in ``data.dvc``. DVC runs as a subprocess of this
interpreter (``python -m dvc``) with analytics and update checks off.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from facesearch.errors import FaceSearchError
from facesearch.ingest.dataset_add import require_photos
from facesearch.settings import Settings

log = logging.getLogger(__name__)

DVC_FILE = "data.dvc"


@dataclass(frozen=True)
class DatasetVersion:
    md5: str  # without DVC's ".dir" suffix
    nfiles: int
    size: int
    changed: bool  # True when this call recorded a new version
    pushed: bool

    @property
    def short(self) -> str:
        return self.md5[:8]


class DvcError(FaceSearchError):
    """A DVC command failed."""


def dvc(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_NO_UPDATE_CHECK": "1"}
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        said = [line.strip() for line in f"{proc.stderr}\n{proc.stdout}".splitlines() if line.strip()]
        raise DvcError(f"dvc {' '.join(args)} failed in {cwd}: {' | '.join(said[-5:]) or f'exit code {proc.returncode}, no output'}")
    return proc.stdout


def ensure_repo(root: Path, settings: Settings) -> None:
    """``dvc init`` (without git if the folder is not a git repo), analytics off, default remote."""
    if not (root / ".dvc").is_dir():
        dvc(["init", "--quiet"] if (root / ".git").exists() else ["init", "--quiet", "--no-scm"], root)
        log.info("initialised DVC in %s", root)
    dvc(["config", "core.analytics", "false"], root)
    dvc(["config", "core.check_update", "false"], root)
    remote = settings.dataset.dvc_remote
    if remote:
        remotes = dvc(["remote", "list"], root)
        if settings.dataset.dvc_remote_name not in remotes.split():
            # DVC resolves a relative path against the working directory (root) and stores it relative to .dvc/
            dvc(["remote", "add", "--default", settings.dataset.dvc_remote_name, remote], root)


def read_dvc_file(root: Path) -> dict:
    path = root / DVC_FILE
    return yaml.safe_load(path.read_text()) if path.exists() else {}


def version_dataset(settings: Settings) -> DatasetVersion:
    """Record the current content of the images folder in ``data.dvc`` (and push it)."""
    require_photos(settings)
    root = Path(settings.paths.project_dir).resolve()
    images = Path(settings.paths.images_dir).resolve()
    try:
        rel = images.relative_to(root.resolve()).as_posix()
    except ValueError:
        raise DvcError(f"paths.images_dir {images} must be inside the project {root}") from None
    ensure_repo(root, settings)
    current = read_dvc_file(root)
    outs = current.get("outs") or []
    if not outs or outs[0].get("path") != rel:
        (root / DVC_FILE).write_text(yaml.safe_dump({"outs": [{"path": rel}]}, sort_keys=False))
        outs = []
    status = json.loads(dvc(["status", DVC_FILE, "--json"], root) or "{}")
    changed = not outs or not outs[0].get("md5") or bool(status)
    if changed:
        dvc(["commit", "--force", DVC_FILE], root)  # not --quiet: its errors are what the user needs to read
    out = read_dvc_file(root)["outs"][0]
    pushed = False
    if settings.dataset.push and settings.dataset.dvc_remote:
        dvc(["push", "-r", settings.dataset.dvc_remote_name, DVC_FILE], root)
        pushed = True
    version = DatasetVersion(str(out["md5"]).removesuffix(".dir"), int(out.get("nfiles", 0)), int(out.get("size", 0)), changed, pushed)
    log.info("dataset version %s (%d files%s)", version.short, version.nfiles, ", new" if changed else "")
    return version


def recorded_version(settings: Settings) -> DatasetVersion:
    """The version ``data.dvc`` records now, without running DVC (safe inside ``dvc repro``)."""
    root = Path(settings.paths.project_dir).resolve()
    outs = read_dvc_file(root).get("outs") or [{}]
    md5 = str(outs[0].get("md5", ""))
    if not md5:
        raise DvcError(f"{root / DVC_FILE} records no dataset version yet: run `facesearch reindex` or `dvc commit {DVC_FILE}`")
    return DatasetVersion(md5.removesuffix(".dir"), int(outs[0].get("nfiles", 0)), int(outs[0].get("size", 0)), False, False)
