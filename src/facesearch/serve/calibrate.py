"""Calibrate the 'same person' distance threshold on labelled faces (folder name = identity).

All pairs are split into genuine (same label) and impostor pairs; the threshold is the midpoint
between consecutive sorted distances that maximises balanced accuracy (mean of TPR and TNR).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Calibration:
    threshold: float
    balanced_accuracy: float
    false_accept_rate: float
    false_reject_rate: float
    genuine_pairs: int
    impostor_pairs: int
    genuine_mean: float
    impostor_mean: float

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def pairwise_l2(vectors: np.ndarray) -> np.ndarray:
    sq = np.sum(vectors**2, axis=1)
    return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * vectors @ vectors.T, 0.0))


def calibrate_threshold(vectors: np.ndarray, labels: list[str]) -> Calibration:
    if len(set(labels)) < 2 or len(labels) < 3:
        raise ValueError("calibration needs at least two identities and three faces")
    labels_arr = np.asarray(labels)
    iu = np.triu_indices(len(labels), k=1)
    dist = pairwise_l2(np.asarray(vectors, dtype=np.float64))[iu]
    same = (labels_arr[:, None] == labels_arr[None, :])[iu]
    if not same.any():
        raise ValueError("calibration needs at least two faces of one identity")
    order = np.argsort(dist, kind="stable")
    d_sorted, s_sorted = dist[order], same[order]
    tp = np.cumsum(s_sorted)  # genuine pairs at or below each candidate
    fp = np.cumsum(~s_sorted)
    n_gen, n_imp = int(same.sum()), int((~same).sum())
    balanced = 0.5 * (tp / n_gen + (1 - fp / n_imp))
    best = int(np.argmax(balanced))
    upper = d_sorted[best + 1] if best + 1 < len(d_sorted) else d_sorted[best]
    return Calibration(
        threshold=float((d_sorted[best] + upper) / 2),
        balanced_accuracy=float(balanced[best]),
        false_accept_rate=float(fp[best] / n_imp),
        false_reject_rate=float(1 - tp[best] / n_gen),
        genuine_pairs=n_gen,
        impostor_pairs=n_imp,
        genuine_mean=float(dist[same].mean()),
        impostor_mean=float(dist[~same].mean()),
    )
