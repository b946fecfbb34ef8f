"""Bring a user's photos into the DVC-tracked dataset folder (``paths.images_dir``), so nobody has to learn its layout.

``facesearch dataset add DIR`` copies DIR's photos to ``images_dir/<DIR name>/``; with ``--people`` DIR holds one
folder per person and they go to ``images_dir/people/<Name>/`` (enrolled as that person). Files are copied by
default (the dataset then owns its bytes, which DVC versions and pushes); ``--link`` hard-links them instead
(same filesystem, no extra space; editing the original edits the dataset). A file already there with the same
bytes is skipped, so adding twice changes nothing; a different file with the same name is never overwritten.
"""

from __future__ import annotations

import filecmp
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from facesearch.errors import BadInputError
from facesearch.ingest.images import SkippedFile, iter_image_files
from facesearch.settings import Settings

log = logging.getLogger(__name__)


class NoPhotosError(BadInputError):
    """The dataset folder is missing or holds no photos: nothing to version, validate or index."""


@dataclass
class AddReport:
    target: str
    mode: str  # copy | link
    added: int = 0
    unchanged: int = 0  # same bytes already in the dataset
    conflicts: list[str] = field(default_factory=list)  # same name, other bytes: left alone
    skipped: list[dict[str, str]] = field(default_factory=list)  # not photos FaceSearch reads

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def require_photos(settings: Settings) -> None:
    """NoPhotosError (exit 2) naming ``paths.images_dir`` and the ways to fill it, when it holds no photos."""
    images = Path(settings.paths.images_dir)
    has_photos = images.is_dir() and any(not isinstance(f, SkippedFile) for f in iter_image_files([images], settings.images))
    if not has_photos:
        state = "does not exist" if not images.exists() else "holds no photos"
        raise NoPhotosError(
            f"no photos to index: {images} (paths.images_dir) {state}. Add some with `facesearch dataset add DIR` "
            f"(or `--people DIR` for one folder per person), copy them there yourself, or run `make demo` to lay out the bundled samples"
        )


def add_to_dataset(source: Path, settings: Settings, *, people: bool = False, link: bool = False) -> AddReport:
    """Copy (or hard-link) the photos under ``source`` into the dataset folder; see the module docstring."""
    source = Path(source)
    if not source.is_dir():
        raise BadInputError(f"{source} is not a folder of photos")
    images = Path(settings.paths.images_dir)
    base = images / "people" if people else images / source.name
    report = AddReport(target=str(base), mode="link" if link else "copy")
    for item in iter_image_files([source], settings.images):
        if isinstance(item, SkippedFile):
            report.skipped.append({"path": str(item.path), "reason": item.reason})
            continue
        relative = item.relative_to(source)
        if people and len(relative.parts) < 2:
            report.skipped.append({"path": str(item), "reason": "not_in_a_person_folder"})
            continue
        dest = base / relative
        if dest.exists():
            if filecmp.cmp(item, dest, shallow=False):
                report.unchanged += 1
            else:
                report.conflicts.append(str(dest))
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        if link:
            os.link(item, dest)
        else:
            shutil.copy2(item, dest)
        report.added += 1
    if report.conflicts:
        log.warning("%d file(s) with the same name but other bytes were left alone, e.g. %s", len(report.conflicts), report.conflicts[0])
    return report
