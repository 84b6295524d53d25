"""Ranking metrics, checked against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsys.metrics import coverage, mean_metrics, ranking_metrics
from recsys.split import time_split


def test_metrics_of_one_list_match_hand_computed_values() -> None:
    per_user = ranking_metrics(np.array([[1, 2, 3]]), [np.array([2, 5])], n_items=10, k=3)
    got = {name: float(v[0]) for name, v in per_user.items()}
    dcg = 1 / math.log2(3)
    assert got == pytest.approx(
        {
            "recall": 1 / 2,
            "precision": 1 / 3,
            "ndcg": dcg / (1 + dcg),
            "map": (1 / 2) / 2,
            "hit_rate": 1.0,
            "mrr": 1 / 2,
        }
    )


def test_a_perfect_list_scores_one_and_a_miss_zero() -> None:
    per_user = ranking_metrics(
        np.array([[4, 7], [1, 2]]), [np.array([7, 4]), np.array([9])], n_items=10, k=2
    )
    assert per_user["ndcg"].tolist() == [1.0, 0.0]
    assert per_user["map"].tolist() == [1.0, 0.0]
    assert per_user["recall"].tolist() == [1.0, 0.0]


def test_items_unknown_to_the_model_count_as_relevant_but_never_hit() -> None:
    per_user = ranking_metrics(np.array([[3, -1]]), [np.array([3, -1, -1])], n_items=5, k=2)
    assert per_user["recall"][0] == pytest.approx(1 / 2)  # -1 twice is one distinct unknown
    assert per_user["precision"][0] == pytest.approx(1 / 2)


def test_users_without_relevant_items_are_left_out_of_means() -> None:
    per_user = ranking_metrics(np.array([[1], [2]]), [np.array([1]), np.array([])], 5, k=1)
    assert math.isnan(per_user["recall"][1])
    assert mean_metrics(per_user)["recall"] == 1.0


def test_short_lists_are_padded_and_k_must_be_positive() -> None:
    per_user = ranking_metrics(np.array([[2]]), [np.array([2])], n_items=3, k=5)
    assert per_user["precision"][0] == pytest.approx(1 / 5)
    with pytest.raises(ValueError, match=r"k must be > 0 \(got 0\)"):
        ranking_metrics(np.array([[2]]), [np.array([2])], n_items=3, k=0)


def test_coverage_counts_distinct_recommended_items() -> None:
    assert coverage(np.array([[0, 1], [1, -1]]), n_items=4) == 0.5


def test_time_split_never_leaks_test_period_events_into_training() -> None:
    import pandas as pd

    events = pd.DataFrame({"timestamp": [0, 86_400 * 5, 86_400 * 9, 86_400 * 10], "x": range(4)})
    split = time_split(events, holdout_days=2)
    assert split.cut == 86_400 * 8
    assert split.train["x"].tolist() == [0, 1]
    assert split.test["x"].tolist() == [2, 3]
    assert split.train["timestamp"].max() < split.cut <= split.test["timestamp"].min()


def test_several_items_unknown_to_the_model_each_count_as_relevant() -> None:
    # One known item ranked first, three new items the model could not know (codes -1..-3).
    per_user = ranking_metrics(np.array([[4, 1]]), [np.array([4, -1, -2, -3])], n_items=5, k=2)
    assert per_user["recall"][0] == pytest.approx(1 / 4)
    assert per_user["ndcg"][0] == pytest.approx(1 / (1 + 1 / math.log2(3)))
