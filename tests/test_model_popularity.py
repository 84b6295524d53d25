"""Lists that need no user: popular, bestsellers, trending, and popular within a category."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.config import MatrixConfig, PopularityConfig
from recsys.errors import ConfigError, NotFittedError
from recsys.history import UserHistory
from recsys.ids import IdMap
from recsys.matrix import confidence_matrix
from recsys.models.base import FitData
from recsys.models.popularity import PopularityModel
from recsys.schema import EventType as E

DAY = 86_400
T = 1_600_000_000
ITEMS = [f"x{i}" for i in range(7)]
# x0 x1 x2 x6 in category 0, x3 x4 in category 1, x5 in none; category 2 has no items.
CATEGORIES = np.array([0, 0, 0, 1, 1, -1, 0], dtype=np.int32)


def _fit_data(rows: Sequence[tuple[str, str, int, int]], now: int, **attributes: Any) -> FitData:
    """FitData of (user, item, event, timestamp) rows over the items ITEMS."""
    frame = pd.DataFrame(rows, columns=["user", "item", "event", "timestamp"])
    frame["quantity"] = 1.0
    frame["price"] = np.nan
    users = IdMap.from_values(frame["user"], name="user")
    items = IdMap(ITEMS, name="item")
    matrix, _ = confidence_matrix(frame, users, items, MatrixConfig())
    history = UserHistory.from_events(frame, users, items)
    return FitData.from_matrix(matrix, history, now, **attributes)


# Weights: view 1, cart 4, favourite 3, purchase 10 (the defaults).
#   x1: a cart 4 + b purchase 10 (later returned) + c view 1       = 15
#   x0: a view 1 (twice, counts once) + a purchase 10 + b view 1   = 12
#   x3: b view 1 + c purchase 10 (twice, counts once) + d view 1   = 12
#   x4: c favourite 3 + d view 1 = 4;  x5: d view 1 + favourite 3  = 4
#   x2: d view 1 (and a return, which counts nothing)              = 1
#   x6: only a return                                              = 0
SHOP = [
    ("a", "x0", E.VIEW, T),
    ("a", "x0", E.VIEW, T + 1),
    ("a", "x0", E.PURCHASE, T + 2),
    ("a", "x1", E.CART, T + 3),
    ("b", "x0", E.VIEW, T),
    ("b", "x1", E.PURCHASE, T + 1),
    ("b", "x1", E.RETURN, T + 2),
    ("b", "x3", E.VIEW, T + 3),
    ("c", "x1", E.VIEW, T),
    ("c", "x3", E.PURCHASE, T + 1),
    ("c", "x3", E.PURCHASE, T + 2),
    ("c", "x4", E.FAVOURITE, T + 3),
    ("d", "x2", E.VIEW, T),
    ("d", "x2", E.RETURN, T + 1),
    ("d", "x3", E.VIEW, T + 2),
    ("d", "x4", E.VIEW, T + 3),
    ("d", "x5", E.VIEW, T + 4),
    ("d", "x5", E.FAVOURITE, T + 5),
    ("d", "x6", E.RETURN, T + 6),
]
SHOP_DATA = _fit_data(SHOP, T + DAY, item_category=CATEGORIES, n_categories=3)
CONFIG = PopularityConfig(per_category=2)


def _fitted(config: PopularityConfig = CONFIG) -> PopularityModel:
    return PopularityModel(config).fit(SHOP_DATA)


def test_popular_items_rank_by_weighted_distinct_visitors_ties_to_the_lower_index() -> None:
    items, scores = _fitted().top(10)
    assert items.tolist() == [1, 0, 3, 4, 5, 2]
    assert scores.tolist() == [15.0, 12.0, 12.0, 4.0, 4.0, 1.0]
    assert items.dtype == np.int32
    assert scores.dtype == np.float32


def test_returns_never_count_and_items_with_only_returns_are_not_listed() -> None:
    model = _fitted()
    assert 6 not in model.top(10)[0]
    # x2's return adds nothing to its one view; x1's returned purchase still showed demand.
    assert model.top(10)[1][model.top(10)[0] == 2].tolist() == [1.0]
    assert 6 not in model.trending(10)[0]
    assert 6 not in model.bestsellers(10)[0]


def test_bestsellers_count_distinct_buyers_not_order_lines() -> None:
    items, buyers = _fitted().bestsellers(10)
    # c bought x3 twice: one buyer, so x3 ties with x0 and x1 and comes last by index.
    assert items.tolist() == [0, 1, 3]
    assert buyers.tolist() == [1.0, 1.0, 1.0]


def test_event_types_without_a_weight_count_nothing() -> None:
    model = _fitted(PopularityConfig(weights={"purchase": 1.0}, per_category=2))
    items, scores = model.top(10)
    assert items.tolist() == [0, 1, 3]
    assert scores.tolist() == [1.0, 1.0, 1.0]


def test_a_weight_for_returns_or_a_negative_weight_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        _fitted(PopularityConfig(weights={"view": 1.0, "return": 5.0}))
    assert str(caught.value) == (
        "models.popularity.weights.return: returns never count as popularity; remove the key"
    )
    with pytest.raises(ConfigError) as caught:
        _fitted(PopularityConfig(weights={"view": -1.0}))
    assert str(caught.value) == "models.popularity.weights.view must be >= 0 (got -1.0)"


def test_popularity_rank_puts_every_item_without_events_last_together() -> None:
    assert _fitted().rank_.tolist() == [1, 0, 5, 2, 3, 4, 6]
    assert _fitted().rank_.dtype == np.int32


def test_category_lists_hold_the_most_popular_items_up_to_the_cap() -> None:
    model = _fitted()
    items, scores = model.top_in_category(0, 10)
    assert items.tolist() == [1, 0]  # x2 (score 1) is beyond per_category = 2
    assert scores.tolist() == [15.0, 12.0]
    assert model.top_in_category(1, 10)[0].tolist() == [3, 4]
    assert model.top_in_category(1, 1)[0].tolist() == [3]
    assert model.category_indptr_.tolist() == [0, 2, 4, 4]
    wide = _fitted(PopularityConfig(per_category=10))
    assert wide.top_in_category(0, 10)[0].tolist() == [1, 0, 2]


def test_an_unknown_or_empty_category_gives_an_empty_list_not_an_error() -> None:
    model = _fitted()
    for category in (-1, 2, 3, 99):
        items, scores = model.top_in_category(category, 5)
        assert items.tolist() == []
        assert scores.tolist() == []
        assert items.dtype == np.int32
        assert scores.dtype == np.float32


def test_excluded_items_are_skipped_and_the_list_still_fills_up() -> None:
    model = _fitted()
    items, scores = model.top(3, exclude=np.array([1, 3]))
    assert items.tolist() == [0, 4, 5]
    assert scores.tolist() == [12.0, 4.0, 4.0]
    assert model.top(3, exclude=np.array([], dtype=np.int32))[0].tolist() == [1, 0, 3]
    assert model.top(10, exclude=np.array([-1, 99, 2]))[0].tolist() == [1, 0, 3, 4, 5]
    assert model.top_in_category(0, 5, exclude=np.array([1]))[0].tolist() == [0]
    assert model.bestsellers(1, exclude=np.array([0]))[0].tolist() == [1]
    # A long exclude list takes the other path through the same rule.
    assert model.top(2, exclude=np.arange(1000, 6000))[0].tolist() == [1, 0]
    assert model.top(2, exclude=np.r_[np.arange(1000, 6000), 1])[0].tolist() == [0, 3]


def test_asking_for_no_items_gives_none() -> None:
    model = _fitted()
    assert model.top(0)[0].tolist() == []
    assert model.top(-3)[0].tolist() == []
    assert model.trending(0, exclude=np.array([1]))[0].tolist() == []


# Trending over window 4 days with half-life 2 days, at now = T:
#   x3: u3 purchase now (its return is ignored)                     = 10
#   x1: u2 cart 1 day ago; u1's view 4 days + 1 s ago is outside     = 4 x 2 ** -0.5
#   x0: u1 view exactly 4 days ago (inside) = 0.25, plus u3's views 4 and 2 days ago, of which
#       only the newest counts = 0.5                                  = 0.75
#   x2: u2 view after now: outside the window, and counted as popular.
TRENDS = [
    ("u1", "x0", E.VIEW, T - 4 * DAY),
    ("u1", "x1", E.VIEW, T - 4 * DAY - 1),
    ("u2", "x1", E.CART, T - DAY),
    ("u2", "x2", E.VIEW, T + 1),
    ("u3", "x0", E.VIEW, T - 4 * DAY),
    ("u3", "x0", E.VIEW, T - 2 * DAY),
    ("u3", "x3", E.PURCHASE, T),
    ("u3", "x3", E.RETURN, T),
]
TREND_CONFIG = PopularityConfig(trending_window_days=4.0, trending_half_life_days=2.0)


def test_trending_halves_an_events_weight_every_half_life_within_the_window() -> None:
    model = PopularityModel(TREND_CONFIG).fit(_fit_data(TRENDS, T))
    items, scores = model.trending(10)
    assert items.tolist() == [3, 1, 0]
    np.testing.assert_allclose(scores, [10.0, 4 * 2**-0.5, 0.75], rtol=1e-6)
    assert scores.dtype == np.float32
    assert model.trending(10, exclude=np.array([3]))[0].tolist() == [1, 0]


def test_events_before_the_window_or_after_now_are_popular_but_not_trending() -> None:
    model = PopularityModel(TREND_CONFIG).fit(_fit_data(TRENDS, T))
    assert model.top(10)[0].tolist() == [3, 1, 0, 2]
    np.testing.assert_allclose(model.top(10)[1], [10.0, 5.0, 2.0, 1.0])
    assert 2 not in model.trending(10)[0]


def test_a_shop_without_events_has_empty_lists_and_every_item_shares_rank_zero() -> None:
    history = UserHistory(
        indptr=np.zeros(1, dtype=np.int64),
        items=np.zeros(0, dtype=np.int32),
        events=np.zeros(0, dtype=np.int8),
        timestamps=np.zeros(0, dtype=np.int64),
        quantities=np.zeros(0, dtype=np.float32),
        baskets=np.zeros(0, dtype=np.int64),
    )
    matrix = sp.csr_matrix((0, len(ITEMS)), dtype=np.float32)
    data = FitData.from_matrix(matrix, history, T, item_category=CATEGORIES, n_categories=3)
    model = PopularityModel().fit(data)
    assert model.top(5)[0].tolist() == []
    assert model.trending(5)[0].tolist() == []
    assert model.top_in_category(0, 5)[0].tolist() == []
    assert model.rank_.tolist() == [0] * 7


def test_a_catalogue_without_categories_has_no_category_lists() -> None:
    model = PopularityModel().fit(_fit_data(SHOP, T + DAY))
    assert model.category_indptr_.tolist() == [0]
    assert model.top_in_category(0, 5)[0].tolist() == []
    assert model.top(2)[0].tolist() == [1, 0]


def test_a_category_code_beyond_n_categories_is_refused() -> None:
    data = _fit_data(SHOP, T, item_category=CATEGORIES, n_categories=1)
    with pytest.raises(ValueError) as caught:
        PopularityModel().fit(data)
    assert str(caught.value) == (
        "item_category code 1 of item 3 is outside 0..0 (n_categories = 1); "
        "-1 marks an item without a category"
    )


def test_fitting_leaves_the_shared_data_untouched() -> None:
    before = {name: np.copy(array) for name, array in SHOP_DATA.history.arrays().items()}
    category = np.copy(SHOP_DATA.item_category)
    _fitted()
    for name, array in SHOP_DATA.history.arrays().items():
        np.testing.assert_array_equal(array, before[name], err_msg=name)
    np.testing.assert_array_equal(SHOP_DATA.item_category, category)


def test_an_unfitted_model_says_it_is_not_fitted() -> None:
    model = PopularityModel()
    message = "PopularityModel is not fitted yet; call fit() or load its arrays first"
    for call in (
        lambda: model.top(5),
        lambda: model.bestsellers(5),
        lambda: model.trending(5),
        lambda: model.top_in_category(0, 5),
        model.arrays,
    ):
        with pytest.raises(NotFittedError) as caught:
            call()
        assert str(caught.value) == message


def test_saved_arrays_reload_into_a_model_that_answers_the_same(tmp_path: Path) -> None:
    model = _fitted()
    path = tmp_path / "popularity.npz"
    np.savez(path, allow_pickle=False, **model.arrays())
    with np.load(path, allow_pickle=False) as saved:
        loaded = PopularityModel()
        loaded.load_arrays(dict(saved))
    assert sorted(model.arrays()) == [
        "bestseller_scores",
        "bestsellers",
        "category_indptr",
        "category_items",
        "category_scores",
        "popular",
        "popular_scores",
        "rank",
        "trending",
        "trending_scores",
    ]
    exclude = np.array([3])
    for method in ("top", "bestsellers", "trending"):
        for got, want in zip(
            getattr(loaded, method)(10, exclude), getattr(model, method)(10, exclude), strict=True
        ):
            np.testing.assert_array_equal(got, want)
            assert got.dtype == want.dtype
    for category in (-1, 0, 1, 2, 3):
        for got, want in zip(
            loaded.top_in_category(category, 10), model.top_in_category(category, 10), strict=True
        ):
            np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(loaded.rank_, model.rank_)


def test_refitting_replaces_every_list() -> None:
    model = _fitted()
    model.fit(_fit_data(TRENDS, T))
    fresh = PopularityModel(CONFIG).fit(_fit_data(TRENDS, T))
    for name, array in fresh.arrays().items():
        np.testing.assert_array_equal(model.arrays()[name], array, err_msg=name)
    assert model.top_in_category(0, 5)[0].tolist() == []
