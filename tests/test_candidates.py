"""The trainer's stored ALS candidates give serving what a live search would, without the search."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.blend import Blender, Strategies
from recsys.candidates import ALSCandidates, PoolSearch, popular_pool
from recsys.config import ALSConfig, BlendConfig
from recsys.models.als import ALSModel
from recsys.models.base import FitData
from recsys.models.neighbours import ItemNeighbours
from recsys.models.popularity import PopularityModel
from recsys.schema import EventType
from tests.models_fixtures import fit_data

CONFIG = ALSConfig(factors=8, iterations=6, alpha=4.0, regularization=0.1, threads=1)


def _shop(seed: int = 0) -> FitData:
    """120 users over 50 items: a third with one item, the rest with 2-12, a few buying."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(120):
        count = 1 if user % 3 == 0 else int(rng.integers(2, 13))
        items = rng.choice(50, size=count, replace=False, p=_zipf(50))
        for day, item in enumerate(items.tolist()):
            event = EventType.PURCHASE if rng.random() < 0.2 else EventType.VIEW
            rows.append((f"u{user:03d}", f"i{item:02d}", event, day))
    rows.append(("lonely", "i49", EventType.VIEW, 0))
    return fit_data(rows, items=[f"i{i:02d}" for i in range(50)])


def _zipf(n: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1)
    return weights / weights.sum()


def _fitted(data: FitData) -> tuple[ALSModel, PopularityModel, np.ndarray]:
    als = ALSModel(CONFIG, seed=2).fit(data)
    popularity = PopularityModel().fit(data)
    return als, popularity, popular_pool(popularity, 30)


def _normalised(scores: np.ndarray) -> np.ndarray:
    return scores / scores.max()


def test_a_users_stored_candidates_are_the_live_search_of_their_vector() -> None:
    data = _shop()
    als, _, pool = _fitted(data)
    stored = ALSCandidates.build(als, data.matrix, pool, k=10)
    search = PoolSearch(als, pool)
    per_user = np.diff(data.matrix.indptr)
    for user in np.flatnonzero(per_user >= 2):
        items, scores = stored.of_user(int(user), 10)
        live_items, live_scores = search.top(als.user_vector(int(user)), 10)
        np.testing.assert_array_equal(items, live_items)
        np.testing.assert_allclose(scores, live_scores, rtol=1e-6)


def test_a_one_item_user_is_served_the_list_of_their_item_with_the_same_scaled_scores() -> None:
    data = _shop()
    als, _, pool = _fitted(data)
    stored = ALSCandidates.build(als, data.matrix, pool, k=10)
    search = PoolSearch(als, pool)
    ones = np.flatnonzero(np.diff(data.matrix.indptr) == 1)
    assert len(ones) >= 40
    for user in ones:
        item = int(data.matrix.indices[data.matrix.indptr[user]])
        assert stored.user_slot[user] == -1 - item  # no list of their own: the item's
        items, scores = stored.of_user(int(user), 10)
        live_items, live_scores = search.top(als.user_vector(int(user)), 10)
        np.testing.assert_array_equal(items, live_items)
        # The blend scales each part to a maximum of 1, so only the scaled scores matter.
        np.testing.assert_allclose(_normalised(scores), _normalised(live_scores), rtol=1e-5)


def test_an_anonymous_one_item_visit_gets_what_folding_it_in_gives() -> None:
    data = _shop()
    als, _, pool = _fitted(data)
    stored = ALSCandidates.build(als, data.matrix, pool, k=10)
    search = PoolSearch(als, pool)
    for item in range(0, 50, 7):
        items, scores = stored.of_item(item, 10)
        live_items, live_scores = search.visit(np.array([item]), 10)
        np.testing.assert_array_equal(items, live_items)
        np.testing.assert_allclose(_normalised(scores), _normalised(live_scores), rtol=1e-5)


def test_the_store_keeps_no_more_than_the_pool_and_a_short_list_is_a_prefix() -> None:
    data = _shop()
    als, _, pool = _fitted(data)
    stored = ALSCandidates.build(als, data.matrix, pool[:6], k=10)
    assert stored.k == 6 and stored.user_positions.dtype == np.uint16
    items, _ = stored.of_item(3, 10)
    assert len(items) == 6 and set(items.tolist()) <= set(pool[:6].tolist())
    assert np.array_equal(stored.of_item(3, 4)[0], items[:4])


def test_stored_candidates_survive_a_round_trip_through_their_arrays() -> None:
    data = _shop()
    als, _, pool = _fitted(data)
    stored = ALSCandidates.build(als, data.matrix, pool, k=10)
    loaded = ALSCandidates(stored.arrays())
    for user in range(0, data.n_users, 9):
        assert np.array_equal(loaded.of_user(user, 10)[0], stored.of_user(user, 10)[0])
    with pytest.raises(KeyError, match="item_ok"):
        ALSCandidates({k: v for k, v in stored.arrays().items() if k != "item_ok"})


def test_a_loaded_als_model_cannot_build_candidates_it_has_no_user_vectors_for() -> None:
    data = _shop()
    als, _, pool = _fitted(data)
    loaded = ALSModel().load_arrays(als.arrays())
    with pytest.raises(ValueError, match="fitted ALS model"):
        ALSCandidates.build(loaded, data.matrix, pool, k=10)


def test_the_blend_ranks_the_same_with_stored_candidates_as_with_a_live_search() -> None:
    data = _shop()
    als, popularity, pool = _fitted(data)
    config = BlendConfig(personal_pool=30, personal_candidates=10)
    models = {
        "als": als,
        "popularity": popularity,
        "neighbours": ItemNeighbours().fit(data),
    }
    stored = ALSCandidates.build(als, data.matrix, pool, k=10)
    live = Blender(Strategies.from_models(data.history, models), config)
    served = Blender(Strategies.from_models(data.history, models, stored), config)
    for user in range(data.n_users):
        expected = live.rank(user, data.now, 10)
        got = served.rank(user, data.now, 10)
        np.testing.assert_array_equal(got.items, expected.items)
        np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-5)
    for session in ([4], [4, 4], [4, 9], [9, 4, 17]):
        expected = live.rank(-1, data.now, 10, session=np.array(session))
        got = served.rank(-1, data.now, 10, session=np.array(session))
        np.testing.assert_array_equal(got.items, expected.items)


def test_an_evaluation_store_holds_exactly_the_lists_its_asked_users_are_answered_from() -> None:
    data = _shop()
    als, _, pool = _fitted(data)
    full = ALSCandidates.build(als, data.matrix, pool, k=10)
    per_user = np.diff(data.matrix.indptr)
    asked = np.r_[np.flatnonzero(per_user == 1)[:5], np.flatnonzero(per_user >= 2)[:5]]
    sample = ALSCandidates.build(als, data.matrix, pool, k=10, users=asked)
    for user in asked.tolist():
        for got, expected in zip(sample.of_user(user, 10), full.of_user(user, 10), strict=True):
            np.testing.assert_array_equal(got, expected)
    their_items = data.matrix.indices[data.matrix.indptr[asked[:5]]]
    others = np.setdiff1d(np.arange(data.matrix.shape[1]), their_items)
    assert sample.item_ok.sum() == len(np.unique(their_items))
    assert all(len(sample.of_item(int(item), 10)[0]) == 0 for item in others)
