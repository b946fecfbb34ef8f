"""Which photos are (near-)duplicates? Resized, recompressed or lightly cropped copies.

1. Candidates come from Milvus: every stored face is range-searched (in batches) for faces of
   other photos within the encoder's ``duplicates.thresholds`` radius. Cost: N/batch Milvus calls
   and O(N*k) memory for candidate pairs, never an O(N^2) loop.
2. A candidate pair of photos is a duplicate when every face of the photo with fewer faces is
   matched (a light crop may drop an edge face) and one of these holds: their whole-photo pHashes
   differ by at most ``duplicates.phash_max_bits`` (resize/recompress: <= 2 bits); every matched
   face is within ``duplicates.near_identical`` (same photo, any crop); or, with two or more
   faces, the matched boxes have the same layout up to scale and shift (crops). The loose radius
   alone cannot tell a copy from another photo of the same person; these checks can.
Byte-identical copies (one row set with several ``image_paths``) are duplicates at distance 0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facesearch.ingest.fingerprint import hamming
from facesearch.store import FaceStore


@dataclass(frozen=True)
class DuplicateGroup:
    images: list[str]
    max_distance: float


@dataclass
class _Photo:
    paths: list[str]
    phash: int
    boxes: dict[int, list[float]] = field(default_factory=dict)


def same_layout(pairs: Sequence[tuple[Sequence[float], Sequence[float]]], tolerance: float) -> bool:
    """True when boxes B equal boxes A up to one scale and shift (what resizing/cropping does)."""
    a = np.asarray([p[0] for p in pairs], dtype=np.float64)
    b = np.asarray([p[1] for p in pairs], dtype=np.float64)
    width_a, width_b = a[:, 2] - a[:, 0], b[:, 2] - b[:, 0]
    if np.any(width_a <= 0) or np.any(width_b <= 0):
        return False
    ratios = width_b / width_a
    scale = float(np.median(ratios))
    if np.any(np.abs(np.log(ratios / scale)) > np.log1p(tolerance)):
        return False
    centre_a = (a[:, :2] + a[:, 2:]) / 2
    centre_b = (b[:, :2] + b[:, 2:]) / 2
    shift = np.median(centre_b - scale * centre_a, axis=0)
    residual = np.linalg.norm(centre_b - (scale * centre_a + shift), axis=1) / np.median(width_b)
    return bool(np.all(residual <= tolerance))


def find_duplicates(
    store: FaceStore,
    collection: str,
    threshold: float,
    k: int,
    nprobe: int,
    *,
    near_identical: float = 0.0,
    phash_max_bits: int = 6,
    layout_tolerance: float = 0.25,
    batch: int = 256,
    progress: Callable[[int], None] | None = None,
) -> list[DuplicateGroup]:
    photos: dict[str, _Photo] = {}
    # (query photo, other photo) -> {query face index: (distance, other face index)}
    matches: dict[tuple[str, str], dict[int, tuple[float, int]]] = defaultdict(dict)
    fields = ["id", "image_sha256", "image_phash", "face_index", "bbox", "image_paths", "embedding"]
    for rows in store.iter_rows(collection, fields, batch_size=batch):
        for row in rows:
            photo = photos.setdefault(row["image_sha256"], _Photo(sorted(row["image_paths"]), int(row["image_phash"])))
            photo.boxes[int(row["face_index"])] = [float(v) for v in row["bbox"]]
        vectors = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        for row, hits in zip(rows, store.search(collection, vectors, k=k, nprobe=nprobe, radius=threshold), strict=True):
            own, face = row["image_sha256"], int(row["face_index"])
            for hit in hits:
                if hit.image_sha256 == own or hit.distance > threshold:
                    continue
                best = matches[(own, hit.image_sha256)]
                if face not in best or hit.distance < best[face][0]:
                    best[face] = (hit.distance, hit.face_index)
        if progress:
            progress(len(rows))
    return _group(photos, matches, _CopyRule(near_identical, phash_max_bits, layout_tolerance))


@dataclass(frozen=True)
class _CopyRule:
    near_identical: float
    phash_max_bits: int
    layout_tolerance: float


def _is_copy(photos: dict[str, _Photo], small: str, large: str, matched: dict[int, tuple[float, int]], rule: _CopyRule) -> bool:
    if len(matched) < len(photos[small].boxes):
        return False
    if hamming(photos[small].phash, photos[large].phash) <= rule.phash_max_bits:
        return True
    if all(dist <= rule.near_identical for dist, _ in matched.values()):
        return True
    partners = [other for _, other in matched.values()]
    if len(matched) < 2 or len(set(partners)) != len(partners) or any(p not in photos[large].boxes for p in partners):
        return False
    pairs = [(photos[small].boxes[f], photos[large].boxes[other]) for f, (_, other) in matched.items()]
    return same_layout(pairs, rule.layout_tolerance)


def _group(photos: dict[str, _Photo], matches: dict[tuple[str, str], dict[int, tuple[float, int]]], rule: _CopyRule) -> list[DuplicateGroup]:
    edges: list[tuple[str, str]] = []
    worst: dict[str, float] = defaultdict(float)  # per photo: largest face distance that joined it
    for a, b in {tuple(sorted(pair)) for pair in matches}:
        if a not in photos or b not in photos:
            continue
        # Check from the photo with fewer faces; with equal counts either direction may be complete
        # (top-k search is not symmetric), so try both.
        na, nb = len(photos[a].boxes), len(photos[b].boxes)
        directions = [(a, b), (b, a)] if na == nb else [(a, b)] if na < nb else [(b, a)]
        found = [matches.get(d, {}) for d in directions if _is_copy(photos, *d, matches.get(d, {}), rule)]
        if not found:
            continue
        matched = found[0]
        edges.append((a, b))
        dist = max(d for d, _ in matched.values())
        worst[a], worst[b] = max(worst[a], dist), max(worst[b], dist)
    groups = []
    for shas in _components(list(photos), edges):
        files = sorted(p for sha in shas for p in photos[sha].paths)
        if len(files) > 1:
            groups.append(DuplicateGroup(images=files, max_distance=round(max(worst[s] for s in shas), 6)))
    return sorted(groups, key=lambda g: (g.max_distance, g.images))


def _components(nodes: list[str], edges: list[tuple[str, str]]) -> list[list[str]]:
    """Connected components of the copy graph (scipy's ``connected_components``), each in ``nodes`` order."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    index = {node: i for i, node in enumerate(nodes)}
    rows = np.fromiter((index[a] for a, _ in edges), dtype=np.int64, count=len(edges))
    cols = np.fromiter((index[b] for _, b in edges), dtype=np.int64, count=len(edges))
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (rows, cols)), shape=(len(nodes), len(nodes)))
    _, labels = connected_components(graph, directed=False)
    members: dict[int, list[str]] = defaultdict(list)
    for node, label in zip(nodes, labels, strict=True):
        members[int(label)].append(node)
    return list(members.values())


def duplicates_json(groups: list[DuplicateGroup], threshold: float) -> dict[str, Any]:
    return {"threshold": threshold, "groups": [{"images": g.images, "max_distance": g.max_distance} for g in groups]}
