"""New and rarely seen items get recommendable neighbours from their catalogue attributes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsys.config import ContentConfig, MatrixConfig
from recsys.errors import ConfigError, NotFittedError
from recsys.history import UserHistory
from recsys.ids import IdMap
from recsys.matrix import confidence_matrix
from recsys.models.base import FitData
from recsys.models.content import ContentModel
from recsys.schema import EventType as E

DAY = 86_400
T = 1_600_000_000
NAN = np.nan

# Item 0 (category 0, brand 0, price 10) and how each other item relates to it:
#   1: category, brand, band      1.75      6: brand, band (no category)   0.75
#   2: category, brand            1.5       7: brand                       0.5
#   3: category, band             1.25      8: band only: no relation
#   4: category (price unknown)   1.0       9: no category, no brand: relates to nothing
#   5: category                   1.0
# Two price bands: the median known price is 14, so 10..13 are band 0 and 14.. band 1.
CATEGORY = np.array([0, 0, 0, 0, 0, 0, -1, 1, 1, -1], dtype=np.int32)
BRAND = np.array([0, 0, 0, 1, -1, 2, 0, 0, -1, -1], dtype=np.int32)
PRICE = np.array([10, 11, 95, 12, NAN, 90, 13, 99, 14, 15])
BANDS = [0, 0, 1, 0, -1, 1, 0, 1, 1, 1]
# Distinct users per item: 6 has 3, 5 has 2, 4 and 1 have 1, the rest none.
VIEWS = [
    ("u0", 5),
    ("u1", 5),
    ("u0", 4),
    ("u0", 6),
    ("u1", 6),
    ("u2", 6),
    ("u2", 1),
    ("u2", 1),
]
INTERACTIONS = [0, 1, 0, 0, 1, 2, 3, 0, 0, 0]


def _fit_data(
    views: list[tuple[str, int]], n_items: int, now: int = T, **attributes: Any
) -> FitData:
    """FitData of view events at time T on items 0..n_items-1."""
    frame = pd.DataFrame(
        [(user, item, E.VIEW, T, 1.0) for user, item in views],
        columns=["user", "item", "event", "timestamp", "quantity"],
    )
    frame["price"] = np.nan
    users = IdMap.from_values(frame["user"], name="user")
    items = IdMap(range(n_items), name="item")
    matrix, _ = confidence_matrix(frame, users, items, MatrixConfig())
    history = UserHistory.from_events(frame, users, items)
    return FitData.from_matrix(matrix, history, now, **attributes)


SHOP = _fit_data(
    VIEWS,
    10,
    item_category=CATEGORY,
    n_categories=2,
    item_brand=BRAND,
    item_price=PRICE,
    item_first_seen=np.full(10, T - 100 * DAY, dtype=np.int64),
)
CONFIG = ContentConfig(k=10, price_bands=2, cold_max_interactions=2)


def _fitted(config: ContentConfig = CONFIG, data: FitData = SHOP) -> ContentModel:
    return ContentModel(config).fit(data)


def test_category_brand_and_price_band_each_add_to_the_similarity() -> None:
    items, scores = _fitted().similar(0, 20)
    # 5 comes before 4 at 1.0 because more users interacted with it.
    assert items.tolist() == [1, 2, 3, 5, 4, 6, 7]
    assert scores.tolist() == [1.75, 1.5, 1.25, 1.0, 1.0, 0.75, 0.5]
    assert items.dtype == np.int32
    assert scores.dtype == np.float32


def test_equally_similar_neighbours_go_by_interactions_then_lower_index() -> None:
    model = _fitted()
    # Item 7 (category 1, brand 0, band 1): 8 shares category and band; 2 brand and band;
    # 0, 1 and 6 only the brand: 6 has 3 users, 1 has 1, 0 none.
    items, scores = model.similar(7, 20)
    assert items.tolist() == [8, 2, 6, 1, 0]
    assert scores.tolist() == [1.25, 0.75, 0.5, 0.5, 0.5]
    # Item 3 (category 0, brand 1, band 0): 1 and 0 share category and band (1 has a user);
    # 5, 4 and 2 share only the category (2 users, 1, none).
    items, scores = model.similar(3, 20)
    assert items.tolist() == [1, 0, 5, 4, 2]
    assert scores.tolist() == [1.25, 1.25, 1.0, 1.0, 1.0]


def test_a_shared_price_band_alone_relates_nothing() -> None:
    model = _fitted()
    assert 8 not in model.similar(0, 20)[0]
    assert model.similar(8, 20)[0].tolist() == [7]


def test_k_keeps_only_the_most_similar_neighbours() -> None:
    model = _fitted(ContentConfig(k=3, price_bands=2))
    assert model.similar(0, 20)[0].tolist() == [1, 2, 3]
    assert model.similar(0, 2)[0].tolist() == [1, 2]
    assert np.diff(model.neighbours_.indptr).max() == 3


def test_an_item_nobody_has_seen_still_gets_neighbours_and_is_cold() -> None:
    model = _fitted()
    assert model.interactions_.tolist() == INTERACTIONS
    assert model.interactions_.dtype == np.int32
    assert model.cold_.tolist() == [True, True, True, True, True, False, False] + [True] * 3
    assert model.cold_[0]
    assert len(model.similar(0, 20)[0]) == 7


def test_an_item_without_category_or_brand_has_no_neighbours_and_is_nobodys() -> None:
    model = _fitted()
    assert model.similar(9, 20)[0].tolist() == []
    assert all(9 not in model.similar(i, 20)[0] for i in range(10))
    assert all(i not in model.similar(i, 20)[0] for i in range(10))


def test_unknown_items_have_no_neighbours_rather_than_an_error() -> None:
    model = _fitted()
    for item in (-1, 10, 99):
        items, scores = model.similar(item, 5)
        assert items.tolist() == []
        assert scores.tolist() == []


def test_excluded_neighbours_are_skipped_and_the_list_still_fills_up() -> None:
    items, scores = _fitted().similar(0, 3, exclude=np.array([2, 5]))
    assert items.tolist() == [1, 3, 4]
    assert scores.tolist() == [1.75, 1.25, 1.0]


def test_price_bands_are_quantiles_of_the_known_prices() -> None:
    model = _fitted()
    assert model.price_band_.tolist() == BANDS
    assert model.price_band_.dtype == np.int8
    five = _fit_data(VIEWS, 7, item_price=np.array([1.0, 2.0, 3.0, 4.0, 5.0, NAN, np.inf]))
    expected = [0, 1, 2, 3, 4, -1, -1]
    assert _fitted(ContentConfig(price_bands=5), five).price_band_.tolist() == expected
    same = _fit_data(VIEWS, 7, item_price=np.full(7, 9.99))
    assert _fitted(ContentConfig(price_bands=5), same).price_band_.tolist() == [4] * 7


def test_without_any_prices_every_band_is_unknown_and_bands_never_match() -> None:
    data = _fit_data(VIEWS, 10, item_category=CATEGORY, n_categories=2, item_brand=BRAND)
    model = _fitted(data=data)
    assert model.price_band_.tolist() == [-1] * 10
    items, scores = model.similar(0, 20)
    assert items.tolist() == [1, 2, 5, 4, 3, 6, 7]
    assert scores.tolist() == [1.5, 1.5, 1.0, 1.0, 1.0, 0.5, 0.5]
    items, scores = model.similar(6, 20)
    assert items.tolist() == [1, 0, 2, 7]
    assert scores.tolist() == [0.5, 0.5, 0.5, 0.5]


def test_without_a_catalogue_the_model_fits_with_empty_neighbour_rows() -> None:
    model = _fitted(data=_fit_data(VIEWS, 10))
    assert model.neighbours_.shape == (10, 10)
    assert model.neighbours_.nnz == 0
    assert model.similar(0, 5)[0].tolist() == []
    assert model.interactions_.tolist() == INTERACTIONS
    assert model.new_items(None, 5).tolist() == []
    assert model.new_items(0, 5).tolist() == []


def test_neighbours_match_an_exhaustive_comparison_of_every_pair() -> None:
    rng = np.random.default_rng(7)
    n = 120
    category = rng.integers(-1, 4, n)
    brand = rng.integers(-1, 6, n)
    price = rng.choice([5.0, 10.0, 20.0, 40.0, NAN], n)
    views = [(f"u{u}", int(i)) for u, i in enumerate(rng.integers(0, n, 300))]
    data = _fit_data(
        views,
        n,
        item_category=category,
        n_categories=4,
        item_brand=brand,
        item_price=price,
    )
    # A small k makes the top k + 1 candidates of each group matter.
    model = ContentModel(ContentConfig(k=4, price_bands=3)).fit(data)
    band, users = model.price_band_, model.interactions_
    for i in range(n):
        expected = []
        for j in range(n):
            same = [
                bool(codes[i] >= 0 and codes[i] == codes[j]) for codes in (category, brand, band)
            ]
            if j != i and (same[0] or same[1]):
                similarity = 1.0 * same[0] + 0.5 * same[1] + 0.25 * same[2]
                expected.append((-similarity, -users[j], j))
        expected.sort()
        items, scores = model.similar(i, 10)
        assert items.tolist() == [j for _, _, j in expected[:4]], i
        assert scores.tolist() == [-s for s, _, _ in expected[:4]], i


def test_items_first_seen_within_the_new_item_days_are_new_arrivals() -> None:
    since = T - 30 * DAY
    first_seen = np.array([since - 1, since, T, T - DAY, T, since + 5, 0], dtype=np.int64)
    data = _fit_data(
        VIEWS,
        7,
        item_category=np.array([0, 0, 1, 0, -1, 1, 1], dtype=np.int32),
        n_categories=3,
        item_first_seen=first_seen,
    )
    model = _fitted(ContentConfig(new_item_days=30.0), data)
    assert model.new_.tolist() == [False, True, True, True, True, True, False]
    # Newest first; 2 and 4 arrived at the same second, so the lower index comes first.
    assert model.new_items().tolist() == [2, 4, 3, 5, 1]
    assert model.new_items(n=2).tolist() == [2, 4]
    assert model.new_items(0).tolist() == [3, 1]
    assert model.new_items(1, n=1).tolist() == [2]
    assert model.new_items(None, 5, exclude=np.array([2, 3])).tolist() == [4, 5, 1]
    for unknown in (-1, 2, 3, 99):
        assert model.new_items(unknown).tolist() == []
    assert model.new_items().dtype == np.int32


def test_too_many_price_bands_for_int8_are_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        ContentModel(ContentConfig(price_bands=128)).fit(SHOP)
    assert str(caught.value) == "models.content.price_bands must be <= 127 (got 128)"


def test_malformed_attribute_codes_are_refused() -> None:
    wrong_length = _fit_data(VIEWS, 10, item_brand=np.zeros(3, dtype=np.int32))
    with pytest.raises(ValueError) as caught:
        _fitted(data=wrong_length)
    assert str(caught.value) == "item_brand has 3 entries but the matrix has 10 items"
    negative = _fit_data(VIEWS, 10, item_brand=np.array([0] * 9 + [-2], dtype=np.int32))
    with pytest.raises(ValueError) as caught:
        _fitted(data=negative)
    assert (
        str(caught.value) == "item_brand code -2 of item 9 is negative; -1 marks an unknown value"
    )
    beyond = _fit_data(VIEWS, 10, item_category=CATEGORY, n_categories=1)
    with pytest.raises(ValueError) as caught:
        _fitted(data=beyond)
    assert str(caught.value) == (
        "item_category code 1 of item 7 is outside 0..0 (n_categories = 1); "
        "-1 marks an item without a category"
    )


def test_fitting_leaves_the_shared_data_untouched() -> None:
    attributes = {
        name: np.copy(getattr(SHOP, name))
        for name in ("item_category", "item_brand", "item_price", "item_first_seen")
    }
    matrix = SHOP.matrix.copy()
    _fitted()
    for name, array in attributes.items():
        np.testing.assert_array_equal(getattr(SHOP, name), array, err_msg=name)
    assert (SHOP.matrix != matrix).nnz == 0


def test_an_unfitted_model_says_it_is_not_fitted() -> None:
    model = ContentModel()
    message = "ContentModel is not fitted yet; call fit() or load its arrays first"
    for call in (lambda: model.similar(0, 5), lambda: model.new_items(), model.arrays):
        with pytest.raises(NotFittedError) as caught:
            call()
        assert str(caught.value) == message


def test_saved_arrays_reload_into_a_model_that_answers_the_same(tmp_path: Path) -> None:
    first_seen = T - np.arange(10, dtype=np.int64) * 5 * DAY
    data = _fit_data(
        VIEWS,
        10,
        item_category=CATEGORY,
        n_categories=2,
        item_brand=BRAND,
        item_price=PRICE,
        item_first_seen=first_seen,
    )
    model = _fitted(data=data)
    path = tmp_path / "content.npz"
    np.savez(path, allow_pickle=False, **model.arrays())
    with np.load(path, allow_pickle=False) as saved:
        loaded = ContentModel()
        loaded.load_arrays(dict(saved))
    for item in range(-1, 11):
        for got, want in zip(loaded.similar(item, 20), model.similar(item, 20), strict=True):
            np.testing.assert_array_equal(got, want)
            assert got.dtype == want.dtype
    for category in (None, -1, 0, 1, 2):
        np.testing.assert_array_equal(loaded.new_items(category, 20), model.new_items(category, 20))
    # Item 6 arrived exactly new_item_days before now: still new.
    assert model.new_items().tolist() == [0, 1, 2, 3, 4, 5, 6]
    for name in ("price_band_", "interactions_", "cold_", "new_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name), err_msg=name)
        assert getattr(loaded, name).dtype == getattr(model, name).dtype


def test_refitting_replaces_every_learned_array() -> None:
    model = _fitted()
    smaller = _fit_data(
        [("u0", 1)],
        3,
        item_category=np.array([0, 0, 0], dtype=np.int32),
        item_first_seen=np.full(3, T, dtype=np.int64),
    )
    model.fit(smaller)
    fresh = ContentModel(CONFIG).fit(smaller)
    for name, array in fresh.arrays().items():
        np.testing.assert_array_equal(model.arrays()[name], array, err_msg=name)
    assert model.similar(0, 20)[0].tolist() == [1, 2]
    assert model.similar(5, 20)[0].tolist() == []
