"""Synthetic, identity-clustered unit vectors with face-embedding-like distance statistics.

These vectors are SYNTHETIC. They are not face data and must never be reported as such. They are
fitted so that the mean/std of same-identity ("genuine") and different-identity ("impostor") L2
distances match those measured on real embeddings: the dlib ResNet v1 encoder (128-d) on the bundled
labelled photos ``samples/faces/johns`` (5 people x 11 photos, 275 genuine and 1,210 impostor pairs).

Generator (deterministic by seed)::

    mu          a random unit vector: the shared "face direction" (real dlib embeddings sit in a cone:
                the norm of their mean is 0.92, so impostors are ~0.62 apart, not sqrt(2))
    B           a random d x r orthonormal basis: the low-rank "face space" identities vary in
    centre_i  = normalise(mu + a * B z_i / sqrt(r)),          z_i ~ N(0, I_r)
    face_ij   = normalise(centre_i + s_ij * e_ij / sqrt(d)),  e_ij ~ N(0, I_d)  (isotropic)
    s_ij      = sigma * exp(tau * g_ij - tau^2 / 2),          g_ij ~ N(0, 1)    (photo-quality spread)

Parameters (a, r, sigma, tau) are fitted per dimension with common random numbers (scipy
least_squares on a, sigma, tau for each rank r of a small grid; the best r wins) so that the four
statistics match the targets. For 512-d the same genuine/impostor targets are used: no real 512-d
embeddings exist here (the facenet weights cannot be downloaded), so 512-d data is only
"128-d statistics in 512 dimensions".

CLI::

    python bench/vectors.py fit --dim 128 512          # fit and print target vs achieved
    python bench/vectors.py measure                    # re-measure the real statistics (dlib, ~30 s)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# Measured with `python bench/vectors.py measure` (dlib-resnet-v1 via facesearch.models.encoders.build_encoder,
# first face of each photo, 55 photos, all 1,485 pairs). The README's calibration quotes the same means.
REAL_DLIB_STATS: dict[str, Any] = {
    "source": "dlib-resnet-v1 embeddings (facesearch build_encoder(settings, 'dlib')) of samples/faces/johns",
    "people": 5,
    "photos": 55,
    "genuine_pairs": 275,
    "impostor_pairs": 1210,
    "genuine_mean": 0.2244,
    "genuine_std": 0.0478,
    "impostor_mean": 0.6244,
    "impostor_std": 0.0702,
    "genuine_min_max": [0.0, 0.3832],
    "impostor_min_max": [0.4637, 0.7614],
    "norm_of_mean_embedding": 0.915,
    "caveat": "5 identities only: the impostor std comes from 10 identity pairs and is a rough estimate",
}

TARGET_KEYS = ("genuine_mean", "genuine_std", "impostor_mean", "impostor_std")
RANK_GRID = (8, 16, 24, 32, 48, 64)


@dataclass(frozen=True)
class GeneratorParams:
    dim: int
    rank: int
    centre_spread: float  # a
    noise_scale: float  # sigma
    noise_scale_log_std: float  # tau
    seed: int = 0

    def describe(self) -> dict[str, Any]:
        return {
            "generator": "bench.vectors: normalise(mu + a*B z/sqrt(r)) identity centres in a rank-r face space around a shared "
            "unit direction mu; faces = normalise(centre + s*e/sqrt(d)), e isotropic N(0,I), s = sigma*lognormal(tau)",
            **asdict(self),
        }


@dataclass
class FitReport:
    params: GeneratorParams
    target: dict[str, float]
    achieved: dict[str, float]
    max_abs_error: float
    rank_errors: dict[int, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.params.describe(),
            "target": self.target,
            "achieved": self.achieved,
            "max_abs_error": round(self.max_abs_error, 4),
            "fit_identities_x_faces": [FIT_IDENTITIES, FIT_FACES],
            "rank_grid_max_abs_error": {str(k): round(v, 4) for k, v in self.rank_errors.items()},
            "synthetic": True,
            "note": "synthetic identity-clustered unit vectors fitted to real dlib genuine/impostor distance statistics; NOT face data",
        }


def _normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32, copy=False)


class FaceLikeVectors:
    """Generates identities and faces for fitted :class:`GeneratorParams` (deterministic by seed)."""

    def __init__(self, params: GeneratorParams) -> None:
        self.p = params
        rng = np.random.default_rng([params.seed, params.dim, 0])
        self.mu = _normalise(rng.standard_normal(params.dim))
        basis, _ = np.linalg.qr(rng.standard_normal((params.dim, params.rank)))
        self.basis = basis.astype(np.float32)

    def centres(self, n_identities: int, stream: int = 1) -> np.ndarray:
        rng = np.random.default_rng([self.p.seed, self.p.dim, stream])
        z = rng.standard_normal((n_identities, self.p.rank)).astype(np.float32)
        return _normalise(self.mu[None, :] + self.p.centre_spread * (z @ self.basis.T) / np.sqrt(self.p.rank))

    def faces_of(self, centres: np.ndarray, identity_rows: np.ndarray, stream: int) -> np.ndarray:
        """One face per entry of ``identity_rows`` (rows of ``centres``)."""
        rng = np.random.default_rng([self.p.seed, self.p.dim, stream])
        n, d = len(identity_rows), self.p.dim
        e = rng.standard_normal((n, d)).astype(np.float32)
        g = rng.standard_normal(n).astype(np.float32)
        tau = self.p.noise_scale_log_std
        s = self.p.noise_scale * np.exp(tau * g - tau * tau / 2)
        return _normalise(centres[identity_rows] + (s[:, None] * e) / np.sqrt(d))

    def dataset(self, n: int, faces_per_identity: int = 10, n_queries: int = 1000, chunk: int = 100_000) -> dict[str, np.ndarray]:
        """``n`` stored faces of ``ceil(n / faces_per_identity)`` identities, plus ``n_queries`` held-out faces.

        Queries are new faces (fresh noise, never stored) of stored identities, like a new photo of a
        known person. Returns vectors (n, d) float32, identity (n,), queries, query_identity.
        """
        n_ids = -(-n // faces_per_identity)
        centres = self.centres(n_ids)
        identity = (np.arange(n) // faces_per_identity).astype(np.int64)
        vectors = np.empty((n, self.p.dim), dtype=np.float32)
        for i, start in enumerate(range(0, n, chunk)):
            vectors[start : start + chunk] = self.faces_of(centres, identity[start : start + chunk], stream=100 + i)
        qrng = np.random.default_rng([self.p.seed, self.p.dim, 2])
        query_identity = qrng.integers(0, n_ids, size=n_queries).astype(np.int64)
        queries = self.faces_of(centres, query_identity, stream=3)
        return {"vectors": vectors, "identity": identity, "queries": queries, "query_identity": query_identity}


# -- statistics and fitting -----------------------------------------------------------------------
FIT_IDENTITIES = 400
FIT_FACES = 10


def distance_stats(vectors: np.ndarray, identity: np.ndarray, max_impostor_pairs: int = 40_000, seed: int = 0) -> dict[str, float]:
    """Genuine: all same-identity pairs. Impostor: a seeded sample of different-identity pairs."""
    genuine = []
    order = np.argsort(identity, kind="stable")
    ids_sorted = identity[order]
    bounds = np.flatnonzero(np.diff(ids_sorted)) + 1
    for rows in np.split(order, bounds):
        if len(rows) > 1:
            x = vectors[rows]
            d = np.sqrt(np.maximum(2 - 2 * (x @ x.T), 0))
            genuine.append(d[np.triu_indices(len(rows), 1)])
    g = np.concatenate(genuine)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(vectors), max_impostor_pairs)
    b = rng.integers(0, len(vectors), max_impostor_pairs)
    keep = identity[a] != identity[b]
    imp = np.sqrt(np.maximum(2 - 2 * np.einsum("ij,ij->i", vectors[a[keep]], vectors[b[keep]]), 0))
    return {
        "genuine_mean": float(g.mean()),
        "genuine_std": float(g.std()),
        "impostor_mean": float(imp.mean()),
        "impostor_std": float(imp.std()),
    }


class _CommonRandomNumbers:
    """Fixed draws for a given (dim, rank) so the fit objective is smooth in (a, sigma, tau)."""

    def __init__(self, dim: int, rank: int, seed: int) -> None:
        rng = np.random.default_rng([seed, dim, rank, 99])
        self.dim, self.rank = dim, rank
        self.mu = _normalise(rng.standard_normal(dim))
        basis, _ = np.linalg.qr(rng.standard_normal((dim, rank)))
        self.zb = (rng.standard_normal((FIT_IDENTITIES, rank)) @ basis.T / np.sqrt(rank)).astype(np.float32)
        self.e = (rng.standard_normal((FIT_IDENTITIES * FIT_FACES, dim)) / np.sqrt(dim)).astype(np.float32)
        self.g = rng.standard_normal(FIT_IDENTITIES * FIT_FACES).astype(np.float32)
        self.identity = np.repeat(np.arange(FIT_IDENTITIES), FIT_FACES)

    def stats(self, a: float, sigma: float, tau: float) -> dict[str, float]:
        centres = _normalise(self.mu[None, :] + a * self.zb)
        s = sigma * np.exp(tau * self.g - tau * tau / 2)
        faces = _normalise(centres[self.identity] + s[:, None] * self.e)
        return distance_stats(faces, self.identity)


def fit(dim: int, target: dict[str, float] | None = None, seed: int = 0, ranks: tuple[int, ...] = RANK_GRID) -> FitReport:
    from scipy.optimize import least_squares

    target = {k: float((target or REAL_DLIB_STATS)[k]) for k in TARGET_KEYS}
    t = np.array([target[k] for k in TARGET_KEYS])
    best: tuple[float, GeneratorParams, dict[str, float]] | None = None
    rank_errors: dict[int, float] = {}
    for rank in (r for r in ranks if r <= dim):
        crn = _CommonRandomNumbers(dim, rank, seed)

        def residual(x: np.ndarray, crn: _CommonRandomNumbers = crn) -> np.ndarray:
            st = crn.stats(*x)
            return np.array([st[k] for k in TARGET_KEYS]) - t

        sol = least_squares(residual, x0=[0.5, 0.25, 0.3], bounds=([0.01, 0.01, 0.0], [5.0, 2.0, 2.0]), diff_step=1e-3)
        a, sigma, tau = (float(v) for v in sol.x)
        achieved = crn.stats(a, sigma, tau)
        err = max(abs(achieved[k] - target[k]) for k in TARGET_KEYS)
        rank_errors[rank] = err
        if best is None or err < best[0]:
            best = (err, GeneratorParams(dim, rank, round(a, 5), round(sigma, 5), round(tau, 5), seed), achieved)
    assert best is not None
    # Check with the real generator (independent draws), not the fitting sample.
    params = best[1]
    gen = FaceLikeVectors(params)
    ds = gen.dataset(20_000, faces_per_identity=FIT_FACES, n_queries=1)
    achieved = {k: round(v, 4) for k, v in distance_stats(ds["vectors"], ds["identity"], seed=seed + 1).items()}
    err = max(abs(achieved[k] - target[k]) for k in TARGET_KEYS)
    return FitReport(params, target, achieved, err, rank_errors)


# -- measuring the real statistics ------------------------------------------------------------------
def measure_real(photos_dir: Path = REPO / "samples" / "faces" / "johns") -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "src"))
    from facesearch.ingest.images import load_image
    from facesearch.models.encoders import build_encoder
    from facesearch.settings import load_settings

    settings = load_settings()
    enc = build_encoder(settings, "dlib")
    embs, labels = [], []
    for path in sorted(photos_dir.glob("*/*")):
        faces = enc.encode([load_image(path, settings.images).image])[0]
        if faces:
            embs.append(faces[0].embedding)
            labels.append(path.parent.name)
    e = np.asarray(embs, dtype=np.float32)
    lab = np.asarray(labels)
    d = np.linalg.norm(e[:, None] - e[None], axis=-1)
    iu = np.triu_indices(len(e), 1)
    same = (lab[:, None] == lab[None])[iu]
    dd = d[iu]
    return {
        "photos": len(e),
        "people": len(set(labels)),
        "genuine_pairs": int(same.sum()),
        "impostor_pairs": int((~same).sum()),
        "genuine_mean": round(float(dd[same].mean()), 4),
        "genuine_std": round(float(dd[same].std()), 4),
        "impostor_mean": round(float(dd[~same].mean()), 4),
        "impostor_std": round(float(dd[~same].std()), 4),
        "genuine_min_max": [round(float(dd[same].min()), 4), round(float(dd[same].max()), 4)],
        "impostor_min_max": [round(float(dd[~same].min()), 4), round(float(dd[~same].max()), 4)],
        "norm_of_mean_embedding": round(float(np.linalg.norm(e.mean(0))), 3),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="fit the generator and print target vs achieved statistics")
    f.add_argument("--dim", type=int, nargs="+", default=[128, 512])
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", type=Path)
    sub.add_parser("measure", help="measure genuine/impostor statistics of real dlib embeddings of samples/faces/johns")
    args = ap.parse_args(argv)
    if args.cmd == "measure":
        print(json.dumps(measure_real(), indent=2))
        return 0
    reports = {str(d): fit(d, seed=args.seed).as_dict() for d in args.dim}
    out = {"real_statistics": REAL_DLIB_STATS, "fits": reports}
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
