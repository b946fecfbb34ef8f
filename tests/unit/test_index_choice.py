"""Choosing an index configuration: recall floor, latency rule, memory budget; the index configs a sweep builds."""

from __future__ import annotations

import pytest

from facesearch.pipeline.sweep import Trial, choose_trial, index_configs, pq_m
from facesearch.settings import SweepSettings
from facesearch.store.indexes import analytic_bytes_per_vector, search_params_for


def trial(index_type: str, recall: float, p95: float, bytes_per_vector: float, p99: float = 0.0) -> Trial:
    return Trial(0, 0, recall, p95 / 2, p95, 1000.0, 1.0, index_type, {}, {}, p99 or p95 * 1.5, bytes_per_vector, bytes_per_vector / 2)


TRIALS = [
    trial("HNSW", 0.995, 1.0, 700.0),  # fastest, most memory
    trial("IVF_FLAT", 0.992, 3.0, 520.0),
    trial("IVF_SQ8", 0.991, 4.0, 140.0),
    trial("IVF_PQ", 0.95, 0.5, 40.0),  # fastest of all but below the recall floor
]


def test_without_a_budget_the_fastest_trial_above_the_recall_floor_wins():
    best, reason = choose_trial(TRIALS, 0.99)
    assert best.index_type == "HNSW" and "lowest p95" in reason


@pytest.mark.parametrize(("budget_gb", "expected"), [(1.0, "HNSW"), (0.6, "IVF_FLAT"), (0.2, "IVF_SQ8")])
def test_choose_trial_respects_max_memory_gb(budget_gb, expected):
    n = 1_000_000  # HNSW 0.65 GiB, IVF_FLAT 0.48 GiB, IVF_SQ8 0.13 GiB
    best, reason = choose_trial(TRIALS, 0.99, max_memory_gb=budget_gb, n_vectors=n)
    assert best.index_type == expected and best.memory_bytes(n) <= budget_gb * 2**30
    assert f"within {budget_gb:g} GB" in reason


def test_nothing_fits_the_budget_then_the_smallest_is_taken_and_said_so():
    best, reason = choose_trial(TRIALS[:3], 0.99, max_memory_gb=0.01, n_vectors=1_000_000)
    assert best.index_type == "IVF_SQ8" and "no configuration fits" in reason


def test_the_p99_rule_ranks_by_p99():
    trials = [trial("HNSW", 0.995, 1.0, 700.0, p99=9.0), trial("IVF_FLAT", 0.995, 2.0, 520.0, p99=2.5)]
    assert choose_trial(trials, 0.99)[0].index_type == "HNSW"
    best, reason = choose_trial(trials, 0.99, rule="lowest_p99_with_min_recall")
    assert best.index_type == "IVF_FLAT" and "lowest p99" in reason


def test_old_ivf_trials_still_work():
    old = Trial(64, 8, 0.995, 1.0, 2.0, 500.0, 0.3)
    assert (old.index_type, old.build, old.search, old.config_key) == ("IVF_FLAT", {"nlist": 64}, {"nprobe": 8}, "IVF_FLAT nlist=64")
    assert choose_trial([old], 0.99)[0] is old


def test_index_configs_by_collection_size():
    settings = SweepSettings(nlist_grid=(64,), nprobe_grid=(1, 8), hnsw_ef_grid=(8, 64), diskann_search_list_grid=(32,))
    small = index_configs(1000, 128, 10, settings)
    assert {c.index_type for c in small} == {"IVF_FLAT"}
    large = {c.index_type: c for c in index_configs(100_000, 128, 10, settings)}
    assert set(large) == {"IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "DISKANN"}
    assert large["IVF_PQ"].build_params == {"nlist": 64, "m": 32, "nbits": 8}
    assert large["HNSW"].search_values == [11, 64]  # ef >= k + 1
    assert pq_m(100, settings) == 25 and pq_m(130, settings) == 26 and 130 % 26 == 0


def test_analytic_memory_orders_the_types():
    size = {t: analytic_bytes_per_vector(t, 128, {"m": 32, "nbits": 8, "M": 16}) for t in ("IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "DISKANN")}
    assert size["IVF_PQ"] < size["DISKANN"] < size["IVF_SQ8"] < size["IVF_FLAT"] < size["HNSW"]
    assert search_params_for("HNSW", 64) == {"ef": 64} and search_params_for("IVF_SQ8", 4) == {"nprobe": 4}
