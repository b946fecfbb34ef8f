"""Where a Milvus Lite store lives once it has moved to the local Milvus standalone.

The embedded default (Milvus Lite 3.2.2) searches in Python: ~2.5 ms + 0.44 us per stored face,
57 ms at 100k faces. The local standalone (Milvus 2.3.5, the ``milvus`` wheel) answers in 3-4 ms
there. When a Lite store passes ``milvus.auto_server_faces``, its collections are copied to the
standalone in ``milvus.server_dir`` (store/lite_to_server.py) and a marker is written beside the
Lite path; from then on every process that is configured with that Lite path connects to the
standalone instead (started on demand, shared by every process). The Lite files stay as they were.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MARKER_SUFFIX = ".server.json"


@dataclass(frozen=True)
class MovedStore:
    """The marker's content: which standalone now holds this Lite store's collections."""

    lite_path: str
    server_dir: str
    faces: int
    collections: list[str]
    moved_at: float


def marker_path(lite_uri: str) -> Path:
    path = Path(lite_uri).expanduser()
    return path.with_name(path.name + MARKER_SUFFIX)


def read_marker(lite_uri: str) -> MovedStore | None:
    marker = marker_path(lite_uri)
    if not marker.exists():
        return None
    try:
        return MovedStore(**json.loads(marker.read_text()))
    except (ValueError, TypeError) as exc:
        from facesearch.errors import StoreError

        raise StoreError(f"{marker} is not a FaceSearch move marker ({exc}); remove it to use the Lite store {lite_uri} again") from exc


def write_marker(lite_uri: str, moved: MovedStore) -> Path:
    """Atomic: a process that starts during the move sees either no marker or a complete one."""
    marker = marker_path(lite_uri)
    fd, tmp = tempfile.mkstemp(dir=marker.parent, prefix=marker.name, suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(moved), handle, indent=2)
    os.replace(tmp, marker)
    return marker


def server_uri_for(lite_uri: str, start_timeout_s: float = 180.0) -> str | None:
    """The standalone's URI when this Lite store has moved (starting the server if it is down), else None."""
    moved = read_marker(lite_uri)
    if moved is None:
        return None
    from facesearch.store.local_server import LocalMilvusServer

    server = LocalMilvusServer(Path(moved.server_dir), start_timeout_s=start_timeout_s)
    state = server.running()
    if state is None:
        log.info("the store %s moved to the local Milvus standalone in %s (%d faces); starting it", lite_uri, moved.server_dir, moved.faces)
        state = server.ensure_running()
    return state.uri
