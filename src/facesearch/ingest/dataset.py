"""The image dataset under ``paths.images_dir``: its manifest (one row per file) and identity labels."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from facesearch.errors import ImageError
from facesearch.ingest.images import SkippedFile, iter_image_files, load_image
from facesearch.settings import Settings

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["path", "sha256", "format", "width", "height", "file_bytes", "readable", "reason", "phash"]


def identity_for(relative: Path, labelled_dirs: tuple[str, ...]) -> str:
    """``people/Ada/1.jpg`` -> ``Ada`` when ``people`` is a labelled dir; else ''."""
    parts = relative.parts
    if len(parts) >= 3 and parts[0] in labelled_dirs:
        return parts[1]
    return ""


def _stat_key(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def _describe(path: Path, root: Path, settings: Settings) -> dict:
    row = {"path": path.relative_to(root).as_posix(), "sha256": None, "format": None, "width": None, "height": None,
           "file_bytes": path.stat().st_size, "readable": False, "reason": "", "phash": None}
    try:
        loaded = load_image(path, settings.images)
        row.update(sha256=loaded.sha256, format=loaded.source_format, width=loaded.size[0], height=loaded.size[1],
                   readable=True, phash=loaded.phash)
    except ImageError as exc:
        row["reason"] = exc.reason
        log.warning("unreadable %s: %s", path, exc)
    return row


def build_manifest(settings: Settings, progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """One row per file: hash, format, size, readability. Unreadable files stay in, flagged.

    Files whose (size, mtime, inode) did not change since the last manifest are not decoded again
    (``<data_dir>/manifest_cache.parquet``), so a nightly re-index of an unchanged folder is cheap.
    """
    root = Path(settings.paths.images_dir)
    if not root.is_dir():
        raise ImageError("not_found", f"dataset folder {root} does not exist (paths.images_dir)")
    cache_file = Path(settings.paths.data_dir) / "manifest_cache.parquet"
    cached = pd.read_parquet(cache_file).set_index("stat_key") if cache_file.exists() else pd.DataFrame()
    rows, keys = [], []
    for item in iter_image_files([root], settings.images):
        if isinstance(item, SkippedFile):
            rows.append({"path": item.path.relative_to(root).as_posix(), "sha256": None, "format": None, "width": None,
                         "height": None, "file_bytes": 0, "readable": False, "reason": item.reason, "phash": None})
            keys.append(None)
        else:
            key = f"{item.relative_to(root).as_posix()}|{_stat_key(item)}"
            rows.append(cached.loc[key].to_dict() if key in cached.index else _describe(item, root, settings))
            keys.append(key)
        if progress:
            progress(1)
    frame = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    frame = frame.astype({"width": "Int64", "height": "Int64", "phash": "Int64", "file_bytes": "int64", "readable": "bool"})
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    frame.assign(stat_key=keys).dropna(subset=["stat_key"]).to_parquet(cache_file, index=False)
    return frame


def readable_images(manifest: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """One row per unique image content: sha256, every relative path, identity."""
    ok = manifest[manifest["readable"]].copy()
    ok["identity"] = [identity_for(Path(p), settings.dataset.labelled_dirs) for p in ok["path"]]
    grouped = ok.groupby("sha256", sort=True).agg(
        paths=("path", lambda s: sorted(s)), identity=("identity", lambda s: next((x for x in sorted(s) if x), "")),
        phash=("phash", "first"),
    )
    return grouped.reset_index()
