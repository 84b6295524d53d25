"""The evaluation's building blocks, checked on small hand-built cases with exact answers.

Ranking metrics and intervals an engineer reads in the report, the time split and the visits
the session protocol replays, and the baselines the engine has to beat.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsys.baselines import ImplicitALS, ItemKNN, LastItemNeighbours, Trending
from recsys.errors import NotEnoughHistoryError
from recsys.metrics import (
    Interval,
    bootstrap_interval,
    mean_metrics,
    popularity_rank,
    ranking_metrics,
    relevance_codes,
)
from recsys.models.popularity import PopularityModel
from recsys.schema import EventType as E
from recsys.split import cut_sessions, time_split
from tests.models_fixtures import DAY, T0, fit_data

P, V = E.PURCHASE, E.VIEW
MINUTE = 60

# --- ranking metrics -----------------------------------------------------------------------

# Three users, k = 3 (discount at rank r: 1 / log2(r + 1), so 1, 1/log2(3), 1/2).
#   a: [1, 2, 3] against {2, 3}: hits at ranks 2 and 3.
#   b: [5, 6, 7] against {5, 7, 8, 9}: hits at ranks 1 and 3; four relevant items but k = 3,
#      so MAP and the ideal DCG are taken over min(4, 3) = 3 items.
#   c: [4, 8, 0] against {0}: one hit, at rank 3.
THREE_USERS = (
    np.array([[1, 2, 3], [5, 6, 7], [4, 8, 0]]),
    [np.array([2, 3]), np.array([5, 7, 8, 9]), np.array([0])],
)
L3 = math.log2(3)


def test_map_mrr_and_ndcg_of_three_users_match_values_worked_out_by_hand() -> None:
    recommended, relevant = THREE_USERS

    per_user = ranking_metrics(recommended, relevant, n_items=10, k=3)

    # MAP: precision at each hit, summed, over min(|rel|, k).
    #   a: (1/2 + 2/3) / 2 = 7/12;  b: (1/1 + 2/3) / 3 = 5/9;  c: (1/3) / 1 = 1/3
    assert per_user["map"].tolist() == pytest.approx([7 / 12, 5 / 9, 1 / 3])
    # MRR: one over the rank of the first hit.
    assert per_user["mrr"].tolist() == pytest.approx([1 / 2, 1, 1 / 3])
    # NDCG: DCG over the ideal DCG of min(|rel|, k) hits at the top.
    #   a: (1/log2(3) + 1/2) / (1 + 1/log2(3))
    #   b: (1 + 1/2) / (1 + 1/log2(3) + 1/2)
    #   c: (1/2) / 1
    assert per_user["ndcg"].tolist() == pytest.approx(
        [(1 / L3 + 1 / 2) / (1 + 1 / L3), (1 + 1 / 2) / (1 + 1 / L3 + 1 / 2), 1 / 2]
    )
    # Recall still counts every relevant item: b found 2 of its 4.
    assert per_user["recall"].tolist() == pytest.approx([1, 2 / 4, 1])
    assert mean_metrics(per_user)["map"] == pytest.approx((7 / 12 + 5 / 9 + 1 / 3) / 3)


def test_a_user_with_more_relevant_items_than_k_can_still_score_a_perfect_list() -> None:
    # Five relevant items, k = 3: three hits in three slots is the best any list can do.
    per_user = ranking_metrics(np.array([[0, 1, 2]]), [np.arange(5)], n_items=10, k=3)

    assert per_user["map"][0] == pytest.approx(1.0)
    assert per_user["ndcg"][0] == pytest.approx(1.0)
    assert per_user["recall"][0] == pytest.approx(3 / 5)


# --- popularity rank -----------------------------------------------------------------------


def test_popularity_rank_is_the_mean_one_based_rank_of_recommended_items() -> None:
    item_rank = np.array([2, 0, 1, 3])  # 0-based: item 1 is the most popular, item 3 the least

    # Items 1, 2 and 0 have 1-based ranks 1, 2 and 3; the -1 padding is no item.
    assert popularity_rank(np.array([[1, 2], [0, -1]]), item_rank) == pytest.approx(2.0)
    assert popularity_rank(np.array([[3, 3]]), item_rank) == pytest.approx(4.0)


def test_popularity_rank_of_lists_without_items_is_nan() -> None:
    item_rank = np.array([0, 1])

    assert math.isnan(popularity_rank(np.array([[-1, -1]]), item_rank))
    assert math.isnan(popularity_rank(np.zeros((0, 5), dtype=np.int64), item_rank))


# --- bootstrap intervals -------------------------------------------------------------------


def test_constant_values_give_a_zero_width_interval_at_the_constant() -> None:
    interval = bootstrap_interval(np.full(50, 0.25), resamples=100)

    assert interval == Interval(mean=0.25, low=0.25, high=0.25, level=0.95)


def test_the_interval_contains_the_mean_and_is_repeatable_with_the_same_seed() -> None:
    values = np.random.default_rng(3).normal(0.3, 0.2, size=120)

    one = bootstrap_interval(values, resamples=300, level=0.9, seed=7)
    two = bootstrap_interval(values, resamples=300, level=0.9, seed=7)
    other = bootstrap_interval(values, resamples=300, level=0.9, seed=8)

    assert one.mean == pytest.approx(values.mean())
    assert one.low < one.mean < one.high
    assert one.level == 0.9
    assert one == two
    assert (other.low, other.high) != (one.low, one.high)
    assert other.mean == one.mean  # the mean itself is not resampled


def test_users_without_a_value_are_left_out_of_the_interval() -> None:
    values = np.array([0.1, np.nan, 0.5, 0.3, np.nan])

    with_nan = bootstrap_interval(values, resamples=200, seed=1)

    assert with_nan == bootstrap_interval(np.array([0.1, 0.5, 0.3]), resamples=200, seed=1)
    assert with_nan.mean == pytest.approx(0.3)
    nobody = bootstrap_interval(np.array([np.nan, np.nan]))
    assert math.isnan(nobody.mean) and math.isnan(nobody.low) and math.isnan(nobody.high)


def test_a_clear_paired_gain_excludes_zero_and_a_coin_toss_does_not() -> None:
    rng = np.random.default_rng(0)
    # 200 users, each 0.1 better with the new strategy, give or take a little.
    gain = 0.1 + rng.normal(0, 0.02, size=200)
    loss = -gain
    # Half the users gain 0.1, the other half lose 0.1: no difference on average.
    toss = np.tile([0.1, -0.1], 100)

    assert bootstrap_interval(gain, resamples=500).excludes_zero()
    assert bootstrap_interval(gain, resamples=500).low > 0
    assert bootstrap_interval(loss, resamples=500).excludes_zero()
    assert bootstrap_interval(loss, resamples=500).high < 0
    coin = bootstrap_interval(toss, resamples=500)
    assert coin.low < 0 < coin.high
    assert not coin.excludes_zero()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"level": 0.0}, "level must be in (0, 1) (got 0.0)"),
        ({"level": 1.0}, "level must be in (0, 1) (got 1.0)"),
        ({"level": 95}, "level must be in (0, 1) (got 95)"),
        ({"resamples": 0}, "resamples must be > 0 (got 0)"),
        ({"resamples": -5}, "resamples must be > 0 (got -5)"),
    ],
)
def test_a_bad_level_or_number_of_resamples_is_refused(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        bootstrap_interval(np.ones(3), **options)
    assert str(caught.value) == message


# --- relevance codes -----------------------------------------------------------------------


def test_items_unknown_to_the_model_each_get_a_negative_code_of_their_own() -> None:
    indices = np.array([3, -1, 0, -1, -1, 7])
    ids = np.array(["a", "new-x", "c", "new-y", "new-x", "d"])

    codes = relevance_codes(indices, ids)

    # Known items keep their index; new-x is -1 wherever it occurs, new-y -2.
    assert codes.tolist() == [3, -1, 0, -2, -1, 7]
    assert indices.tolist() == [3, -1, 0, -1, -1, 7]  # the caller's array is left alone


def test_a_test_period_of_known_items_only_keeps_every_index() -> None:
    codes = relevance_codes(np.array([2, 0, 2]), np.array(["x", "y", "x"]))

    assert codes.tolist() == [2, 0, 2]


# --- the time split ------------------------------------------------------------------------


def _log(days: list[float]) -> pd.DataFrame:
    """Events at T0 + each day, in the given (not necessarily time) order, numbered by row."""
    return pd.DataFrame({"timestamp": [T0 + int(d * DAY) for d in days], "row": range(len(days))})


def test_holdout_share_cuts_at_that_share_of_the_span_before_the_newest_event() -> None:
    # A 100-day log; the last 20% of its span starts on day 80.
    events = _log([0, 10, 50, 79.99, 80, 100])

    split = time_split(events, holdout_share=0.2)

    assert split.cut == T0 + 80 * DAY
    assert split.train["row"].tolist() == [0, 1, 2, 3]  # strictly before the cut
    assert split.test["row"].tolist() == [4, 5]  # at the cut or after it


@pytest.mark.parametrize("holdout", [{"holdout_days": 3}, {"holdout_share": 0.3}])
def test_no_test_period_event_reaches_training(holdout: dict[str, float]) -> None:
    rng = np.random.default_rng(4)
    events = _log(rng.uniform(0, 20, size=300).tolist())  # shuffled in time

    split = time_split(events, **holdout)

    assert split.train["timestamp"].max() < split.cut <= split.test["timestamp"].min()
    assert sorted(split.train["row"].tolist() + split.test["row"].tolist()) == list(range(300))
    assert len(split.test) > 0 and len(split.train) > 0


@pytest.mark.parametrize(
    "holdout",
    [{}, {"holdout_days": 3, "holdout_share": 0.1}],
    ids=["neither", "both"],
)
def test_exactly_one_of_holdout_days_and_share_is_required(holdout: dict[str, float]) -> None:
    with pytest.raises(ValueError) as caught:
        time_split(_log([0, 1, 2]), **holdout)
    assert str(caught.value) == "give exactly one of holdout_days and holdout_share"


def test_a_log_of_one_moment_leaves_nothing_to_train_on() -> None:
    with pytest.raises(NotEnoughHistoryError) as caught:
        time_split(_log([5, 5, 5]), holdout_share=0.5)
    assert str(caught.value) == (
        "every event falls in the last 50% of the log's time span: nothing to train on before them"
    )


# --- visits --------------------------------------------------------------------------------

GAP = 30 * MINUTE


def test_thirty_minutes_of_inactivity_end_a_visit_and_a_new_user_starts_one() -> None:
    users = np.array([1, 1, 1, 1, 2, 2])
    times = np.array([0, GAP, 2 * GAP + 1, 2 * GAP + 100, 2 * GAP + 100, 2 * GAP + 160])
    # gap:               30 min  30 min 1 s   99 s         new user        60 s

    sessions = cut_sessions(users, times, GAP)

    assert sessions.tolist() == [0, 0, 1, 1, 2, 2]


def test_a_new_basket_starts_a_visit_and_rows_without_one_follow_the_gap_rule() -> None:
    users = np.ones(7, dtype=np.int64)
    times = np.array([0, 60, 120, 180, 5000, 5060, 9000])
    baskets = np.array(["A", "B", "B", None, None, np.nan, "C"], dtype=object)
    # A -> B one minute later: a new basket, a new visit.
    # B -> B: the same visit.  B -> no basket 60 s later: same visit by the gap rule.
    # no basket -> no basket 80 minutes later: a new visit.  then 60 s later (NaN): same visit.
    # no basket -> C 65 minutes later: a new visit.

    sessions = cut_sessions(users, times, GAP, baskets)

    assert sessions.tolist() == [0, 1, 1, 1, 2, 2, 3]


def test_times_out_of_order_within_a_user_are_refused() -> None:
    # Across users the clock may go back; within a user it may not.
    assert cut_sessions(np.array([1, 2]), np.array([500, 100]), GAP).tolist() == [0, 1]
    with pytest.raises(ValueError) as caught:
        cut_sessions(np.array([1, 1, 2]), np.array([500, 100, 0]), GAP)
    assert str(caught.value) == "rows must be sorted by user, then time"


def test_no_rows_give_no_sessions() -> None:
    sessions = cut_sessions(np.array([]), np.array([]), GAP, baskets=np.array([]))

    assert sessions.dtype == np.int64 and sessions.shape == (0,)


# --- baselines -----------------------------------------------------------------------------


def test_trending_fills_with_popular_items_when_few_items_trend() -> None:
    data = fit_data(
        [
            ("u1", 0, P, 0),  # item 0: three buyers long ago (the most popular)
            ("u2", 0, P, 0),
            ("u3", 0, P, 0),
            ("u1", 1, P, 1),  # item 1: two buyers long ago
            ("u2", 1, P, 1),
            ("u3", 4, V, 1),  # item 4: one look long ago
            ("u4", 3, V, 29),  # item 3: looked at yesterday
            ("u5", 2, V, 30),  # item 2: looked at today, the newest event
        ],
        items=list(range(5)),
    )
    trending = Trending(PopularityModel().fit(data))

    # Only items 2 and 3 fall in the 14-day window (today's first); then popular: 0, 1, 4.
    assert trending.rank(-1, 5).tolist() == [2, 3, 0, 1, 4]
    assert trending.rank(-1, 1).tolist() == [2]


# Two groups of shoppers: items 0-2 go together, and items 3-5.
CLUSTERS = fit_data(
    [
        *[(u, i, P, 1) for u in ("a1", "a2") for i in (0, 1, 2)],
        ("a3", 0, P, 1),
        ("a3", 2, P, 1),
        *[(u, i, P, 1) for u in ("b1", "b2") for i in (3, 4, 5)],
        ("b3", 3, P, 1),
        ("b3", 4, P, 1),
    ],
    items=list(range(6)),
)


def test_item_knn_answers_a_visit_with_the_items_bought_with_it() -> None:
    knn = ItemKNN(CLUSTERS.matrix)

    ranked = knn.rank(-1, 1, visit=np.array([0, 1]))

    # Item 2 is bought with both 0 and 1; items 3-5 are never bought with either.
    assert ranked.tolist() == [2]
    assert knn.rank(-1, 5).tolist() == []  # a stranger without a visit: nothing to go on


def test_implicit_als_answers_a_visit_with_its_items_left_out() -> None:
    als = ImplicitALS(CLUSTERS.matrix, seed=3)

    # Four items are not in the visit: asked for four, it has them all to choose from.
    ranked = als.rank(-1, 4, visit=np.array([3, 4, 3]))

    assert sorted(ranked.tolist()) == [0, 1, 2, 5]
    assert als.rank(-1, 4).tolist() == []


# The library fills a short list with the liked items themselves (item-kNN scores them 0, ALS
# the lowest float32): the wrappers must still leave them out, as the library means to.


@pytest.mark.parametrize(
    ("baseline", "user", "visit", "has"),
    [
        # Six items asked for each time (items 3-5 are never bought with 0-2).
        # A visit of items 0 and 1: item-kNN answers [2, 1, 0].
        ("item_knn", -1, [0, 1], {0, 1}),
        # Known user a3 (bought 0 and 2): item-kNN answers [1, 2, 0].
        ("item_knn", 2, None, {0, 2}),
        # A visit of items 3 and 4: ALS answers [5, 1, 2, 0, 4, 3].
        ("implicit_als", -1, [3, 4], {3, 4}),
        # Known user a1 (bought 0, 1 and 2): ALS answers [4, 3, 5, 2, 1, 0].
        ("implicit_als", 0, None, {0, 1, 2}),
    ],
    ids=["knn-visit", "knn-known-user", "als-visit", "als-known-user"],
)
def test_implicit_baselines_never_return_items_the_visitor_already_has(
    baseline: str, user: int, visit: list[int] | None, has: set[int]
) -> None:
    model = ItemKNN(CLUSTERS.matrix) if baseline == "item_knn" else ImplicitALS(CLUSTERS.matrix)

    ranked = model.rank(user, 6, visit=None if visit is None else np.array(visit))

    assert not has & set(ranked.tolist()), f"{baseline} returned {ranked.tolist()}"


def test_last_item_neighbours_follow_the_visits_last_item_never_the_item_itself() -> None:
    last = LastItemNeighbours(ItemKNN(CLUSTERS.matrix))

    # The visit ends on item 0: its neighbours are 2 (cosine 1: the same three buyers) and 1
    # (cosine 2 / sqrt(3 x 2)); item 3, seen earlier in the visit, does not count.
    assert last.rank(-1, 5, visit=np.array([3, 0])).tolist() == [2, 1]
    assert last.rank(-1, 1, visit=np.array([3, 0])).tolist() == [2]
    assert 4 in last.rank(-1, 5, visit=np.array([0, 3])).tolist()


def test_last_item_neighbours_have_nothing_without_a_visit() -> None:
    last = LastItemNeighbours(ItemKNN(CLUSTERS.matrix))

    assert last.rank(-1, 5).tolist() == []
    assert last.rank(0, 5, visit=np.array([], dtype=np.int64)).tolist() == []
