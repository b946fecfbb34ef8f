"""People clustering's pure parts: the DBSCAN rule on neighbour lists, cluster matching, the clustering scores, settings."""

from __future__ import annotations

import numpy as np
import pytest

from facesearch.errors import ConfigError
from facesearch.serve.people_cluster import apply_rule, match_clusters
from facesearch.serve.people_eval import clustering_scores
from facesearch.settings import load_settings
from facesearch.store.people_store import Assignment, Person


def neighbours_of(points: np.ndarray, eps: float) -> list[list[tuple[int, float]]]:
    dist = np.abs(points[:, None] - points[None])
    return [[(int(j), float(dist[i, j])) for j in np.argsort(dist[i]) if dist[i, j] <= eps] for i in range(len(points))]


def test_dense_groups_become_people_and_loners_stay_unassigned():
    points = np.array([0.0, 0.1, 0.2, 0.3, 5.0, 5.1, 5.2, 9.0, 20.0])  # two dense groups, a loner, a far loner
    result = apply_rule(np.arange(len(points)), neighbours_of(points, 0.25), 3, {}, {})
    labels = result.labels
    assert len(set(labels[:4])) == 1 and len(set(labels[4:7])) == 1 and labels[0] != labels[4]
    assert labels[0] >= 0 and labels[4] >= 0 and labels[7] == -1 and labels[8] == -1


def test_a_border_face_joins_but_does_not_chain():
    points = np.array([0.0, 0.05, 0.1, 0.15, 0.35, 0.55])  # 0.35 has 3 neighbours (< 4): border; 0.55 only reaches 0.35
    labels = apply_rule(np.arange(6), neighbours_of(points, 0.21), 4, {}, {}).labels
    assert labels[0] >= 0 and labels[4] == labels[0] and labels[5] == -1


def test_new_faces_join_the_existing_person_of_their_core_neighbours():
    points = np.array([0.0, 0.1, 0.2, 0.15, 0.05])  # faces 0-2 are person 7 already; 3 and 4 are new
    existing = {i: Assignment(i, 7, True) for i in range(3)}
    nb = neighbours_of(points, 0.25)
    result = apply_rule(np.array([3, 4]), [nb[3], nb[4]], 3, existing, {})
    assert result.cluster_person[int(result.labels[0])] == 7 and result.labels[0] == result.labels[1]


def test_enrolled_faces_of_one_name_are_linked():
    points = np.array([0.0, 0.1, 0.2, 3.0, 3.1, 3.2])
    result = apply_rule(np.arange(6), neighbours_of(points, 0.25), 3, {}, {i: "Ann" for i in range(6)})
    assert len(set(result.labels)) == 1 and result.labels[0] >= 0


def test_clusters_map_to_the_old_person_they_overlap_most():
    assert match_clusters({0: {1, 2, 3}, 1: {4, 5}}, {10: {1, 2}, 11: {3, 4, 5}}) == {1: 11, 0: 10}


def test_scores_count_splits_merges_and_unassigned():
    perfect = clustering_scores(["a", "a", "b", "b"], ["1", "1", "2", "2"])
    assert perfect["bcubed_f1"] == 1.0 and perfect["split"] == perfect["merged"] == 0
    merged = clustering_scores(["a", "a", "b", "b"], ["1", "1", "1", "1"])
    assert merged["merged"] == 1 and merged["pairwise_precision"] == pytest.approx(1 / 3, abs=1e-4) and merged["bcubed_f1"] < 1
    split = clustering_scores(["a", "a", "a", "b"], ["1", "1", None, "2"])
    assert split["split"] == 1 and split["unassigned"] == 1 and split["pairwise_recall"] == pytest.approx(1 / 3, abs=1e-4)


def test_unnamed_people_display_as_person_n():
    assert Person(12, "dlib-resnet-v1").display_name == "Person 12"
    assert Person(12, "dlib-resnet-v1", "Ann").display_name == "Ann"


def test_people_settings_are_validated():
    assert load_settings().people.min_faces == 3
    with pytest.raises(ConfigError, match="people.min_faces"):
        load_settings(overrides={"people": {"min_faces": 0}})
    with pytest.raises(ConfigError, match="people.k"):
        load_settings(overrides={"people": {"k": 4, "min_faces": 5}})
