"""Neighbour baskets (TIFU-KNN): a customer's own decayed baskets, topped up by similar ones'."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.config import TifuConfig
from recsys.errors import ConfigError, NotFittedError
from recsys.history import UserHistory
from recsys.ids import IdMap
from recsys.models import tifu
from recsys.models.base import FitData
from recsys.models.tifu import TifuKNN
from recsys.schema import EventType as E

DAY = 86_400
MIDNIGHT = 1_599_955_200  # 2020-09-13 00:00 UTC

# (user, item, event, day after MIDNIGHT, basket code or None)
Row = tuple[str, str, int, float, str | None]


def _data(rows: list[Row], items: list[str], users: list[str] | None = None) -> FitData:
    """FitData of a small log; users default to their order of first appearance."""
    frame = pd.DataFrame(
        [(u, i, int(e), MIDNIGHT + round(day * DAY), 1.0, s) for u, i, e, day, s in rows],
        columns=["user", "item", "event", "timestamp", "quantity", "session"],
    )
    user_map = IdMap(users if users is not None else pd.unique(frame["user"]), name="user")
    item_map = IdMap(items, name="item")
    history = UserHistory.from_events(frame, user_map, item_map)
    matrix = sp.csr_matrix((len(user_map), len(item_map)), dtype=np.float32)
    return FitData.from_matrix(matrix, history, int(frame["timestamp"].max()))


def _buys(user: str, day: float, *items: str, basket: str | None = None) -> list[Row]:
    return [(user, item, E.PURCHASE, day, basket) for item in items]


def _fit(data: FitData, **config: float) -> TifuKNN:
    return TifuKNN(TifuConfig(**config)).fit(data)  # type: ignore[arg-type]


def _own(model: TifuKNN, user: int, items: list[str]) -> dict[str, float]:
    got, weights = model.own_vector(user)
    return {items[i]: float(w) for i, w in zip(got, weights, strict=True)}


def _list(model: TifuKNN, user: int, items: list[str], k: int = 10) -> list[str]:
    return [items[i] for i in model.of_user(user, k)[0]]


XYZ = ["x", "y", "z"]


def test_older_baskets_fade_within_a_group_and_older_groups_fade_more() -> None:
    # group_size 2, both decays 0.5. ann's baskets, oldest first: {x}, {y}, {x, z}, {z}.
    # Newest group ({x, z}, {z}): (1 x {z} + 0.5 x {x, z}) / 2 -> x 0.25, z 0.75.
    # Older group ({x}, {y}):     (1 x {y} + 0.5 x {x}) / 2    -> x 0.25, y 0.5.
    # ann = (newest + 0.5 x older) / 2 -> x (0.25 + 0.125) / 2 = 0.1875, y 0.125, z 0.375.
    # bob's three baskets {x}, {y}, {y}: newest group ({y}, {y}) -> y (1 + 0.5) / 2 = 0.75;
    # the oldest group is the short one, {x} alone -> x 1. bob = (y 0.75 + 0.5 x x 1) / 2.
    rows = [
        *_buys("ann", 0, "x"),
        *_buys("ann", 1, "y"),
        *_buys("ann", 2, "x", "z"),
        *_buys("ann", 3, "z"),
        *_buys("bob", 0, "x"),
        *_buys("bob", 1, "y"),
        *_buys("bob", 2, "y"),
    ]
    model = _fit(_data(rows, XYZ), group_size=2, within_decay=0.5, group_decay=0.5, k=1)
    assert _own(model, 0, XYZ) == {"z": 0.375, "x": 0.1875, "y": 0.125}
    assert _own(model, 1, XYZ) == {"y": 0.375, "x": 0.25}
    assert model.own_vector(0)[0].tolist() == [2, 0, 1]  # largest first


def test_an_invoice_is_one_basket_and_purchases_without_one_are_grouped_by_utc_day() -> None:
    items = ["a", "b", "c", "d"]
    rows = [
        # invoice i1 lists a twice: a basket holds an item or not.
        *_buys("cat", 0, "a", "a", "b", basket="i1"),
        # 23:00 and 01:00 the next morning are two UTC days: two baskets ...
        *_buys("cat", 1 + 23 / 24, "a"),
        *_buys("cat", 2 + 1 / 24, "b"),
        # ... and 01:00 and 20:00 of one day are one.
        *_buys("cat", 2 + 20 / 24, "c"),
        ("cat", "d", E.VIEW, 2.5, None),  # views make no basket
    ]
    model = _fit(_data(rows, items))
    # Three baskets in one group (group_size 3, within_decay 0.9), newest first:
    # {b, c} x 1, {a} x 0.9, {a, b} x 0.81, averaged: a = (0.9 + 0.81) / 3 = 0.57,
    # b = (1 + 0.81) / 3 = 0.60333, c = 1 / 3.
    own = _own(model, 0, items)
    assert list(own) == ["b", "a", "c"]
    np.testing.assert_allclose(list(own.values()), [1.81 / 3, 1.71 / 3, 1 / 3], rtol=1e-6)


SHOP = ["coffee", "filters", "mugs", "tea"]


def _shop() -> FitData:
    return _data(
        [
            *_buys("ann", 0, "coffee", "filters"),
            *_buys("bob", 0, "coffee", "filters", "mugs"),
            *_buys("cat", 0, "tea"),
        ],
        SHOP,
    )


def test_a_customer_is_offered_what_their_nearest_neighbour_bought_besides() -> None:
    model = _fit(_shop(), k=1, max_item_users=2, alpha=0.7)
    # ann = {coffee 1, filters 1}; her nearest is bob (cosine 2 / sqrt(6)) = {coffee, filters,
    # mugs 1}: coffee 0.7 x 1 + 0.3 x 1 = 1, filters 1, mugs 0.3 x 1 (explore).
    items, scores = model.of_user(0, 10)
    assert [SHOP[i] for i in items] == ["coffee", "filters", "mugs"]
    np.testing.assert_allclose(scores, [1.0, 1.0, 0.3], rtol=1e-6)
    assert "mugs" not in _own(model, 0, SHOP)  # so mugs is explore, not repeat
    # bob's nearest is ann: mugs keeps only his own 0.7.
    np.testing.assert_allclose(model.of_user(1, 10)[1], [1.0, 1.0, 0.7], rtol=1e-6)
    # cat shares nothing with anyone: her own tea only, at alpha.
    assert _list(model, 2, SHOP) == ["tea"]
    np.testing.assert_allclose(model.of_user(2, 10)[1], [0.7], rtol=1e-6)


def test_items_bought_often_and_lately_rank_above_items_bought_once_long_ago() -> None:
    items = ["old", "fav", "new"]
    rows = [
        *_buys("dan", 0, "old", "fav"),
        *_buys("dan", 10, "fav"),
        *_buys("dan", 20, "fav", "new"),
    ]
    model = _fit(_data(rows, items))
    # (1 x {fav, new} + 0.9 x {fav} + 0.81 x {old, fav}) / 3: fav 0.90333, new 0.3333, old 0.27.
    assert _list(model, 0, items) == ["fav", "new", "old"]
    np.testing.assert_allclose(model.of_user(0, 3)[1], [0.7 * 2.71 / 3, 0.7 / 3, 0.7 * 0.27])


def test_with_alpha_one_a_customer_is_offered_only_their_own_items() -> None:
    model = _fit(_shop(), k=1, max_item_users=2, alpha=1.0)
    assert _list(model, 0, SHOP) == ["coffee", "filters"]
    np.testing.assert_array_equal(model.of_user(0, 10)[1], [1.0, 1.0])
    assert _list(model, 1, SHOP) == ["coffee", "filters", "mugs"]


def test_no_one_is_their_own_neighbour_and_equally_near_ones_go_to_the_lower_index() -> None:
    items = ["a", "b", "c", "d"]
    rows = [
        *_buys("u0", 0, "a", "b"),
        *_buys("u1", 0, "a", "c"),
        *_buys("u2", 0, "a", "d"),
        *_buys("u3", 0, "a", "b"),  # the same as u0
    ]
    model = _fit(_data(rows, items), k=1, max_item_users=4, alpha=0.5)
    # u0 and u3 are each other's nearest (cosine 1), not their own.
    assert _list(model, 0, items) == ["a", "b"]
    assert _list(model, 3, items) == ["a", "b"]
    # u1 is as close (0.5) to u0, u2 and u3: u0 wins. u1: a 1, b 0.5 (from u0), c 0.5 (own);
    # equal scores go to the lower item index.
    assert _list(model, 1, items) == ["a", "b", "c"]
    np.testing.assert_allclose(model.of_user(1, 10)[1], [1.0, 0.5, 0.5], rtol=1e-6)
    assert _list(model, 2, items) == ["a", "b", "d"]


def test_neighbours_are_searched_only_through_an_items_strongest_buyers() -> None:
    items = ["a", "b", "c"]
    rows = [
        *_buys("u0", 0, "a"),
        *_buys("u1", 0, "a"),
        *_buys("u2", 0, "a", "b"),
        *_buys("u3", 0, "a", "b", "c"),
    ]
    data = _data(rows, items)
    # Exactly, u2's nearest is u3 (cosine 0.82), who bought c.
    assert _list(_fit(data, k=1, max_item_users=4), 2, items) == ["a", "b", "c"]
    # Through a's 2 strongest buyers (u0, u1: a is all they bought) u3 shares only b with u2
    # (0.41 < 0.71), so u0 is u2's nearest and c is not offered.
    assert _list(_fit(data, k=1, max_item_users=2), 2, items) == ["a", "b"]


def test_customers_with_too_few_baskets_get_no_list_and_are_nobodys_neighbour() -> None:
    rows = [
        *_buys("ann", 0, "coffee", "mugs"),
        *_buys("bob", 0, "coffee"),
        *_buys("bob", 5, "filters"),
        *_buys("cat", 0, "coffee"),
        *_buys("cat", 3, "tea"),
    ]
    model = _fit(_data(rows, SHOP), min_baskets=2, k=1, max_item_users=3)
    assert model.of_user(0, 10)[0].tolist() == []
    assert model.own_vector(0)[0].tolist() == []
    assert "mugs" not in _list(model, 1, SHOP)  # ann's mugs reach nobody
    assert "tea" in _list(model, 1, SHOP)  # cat is bob's neighbour


def test_an_unknown_customer_or_one_who_never_bought_gets_nothing() -> None:
    data = _data(
        [*_buys("ann", 0, "coffee"), ("bob", "tea", E.VIEW, 0, None)],
        SHOP,
        users=["ann", "bob", "newcomer"],
    )
    model = _fit(data)
    for user in (-1, 1, 2, 3, 10**9):
        items, scores = model.of_user(user, 10)
        assert len(items) == 0 and len(scores) == 0
        assert items.dtype == np.int64 and scores.dtype == np.float32
        assert len(model.own_vector(user)[0]) == 0
    items, scores = model.of_user(0, 10)
    assert items.dtype == np.int64 and scores.dtype == np.float32
    assert items.tolist() == [0]
    assert model.of_user(0, 0)[0].tolist() == [] and model.of_user(0, -1)[0].tolist() == []


def test_of_user_returns_at_most_k_of_the_stored_candidates() -> None:
    rows = [*_buys("ann", 0, "coffee", "filters", "mugs", "tea")]
    model = _fit(_data(rows, SHOP), candidates=3)
    assert model.of_user(0, 10)[0].tolist() == [0, 1, 2]
    assert model.of_user(0, 2)[0].tolist() == [0, 1]


def test_a_shop_with_no_sales_yet_learns_nothing_and_offers_nothing() -> None:
    data = _data([("ann", "tea", E.VIEW, 0, None)], SHOP)
    model = _fit(data)
    assert model.user_list_.tolist() == [-1]
    assert model.lists_indptr_.tolist() == [0]
    assert model.of_user(0, 5)[0].tolist() == []


def _big_shop() -> FitData:
    rng = np.random.default_rng(7)
    items = [f"i{j}" for j in range(12)]
    rows: list[Row] = []
    for u in range(40):
        for _ in range(int(rng.integers(1, 6))):
            day = float(rng.integers(0, 30))
            bought = rng.choice(12, size=int(rng.integers(1, 4)), replace=False)
            rows.extend(_buys(f"u{u}", day, *(items[j] for j in bought)))
    return _data(rows, items)


def test_a_saved_and_reloaded_model_offers_everyone_the_same_items(tmp_path: Path) -> None:
    model = _fit(_big_shop(), k=5, max_item_users=10)
    for name, array in model.arrays().items():
        np.save(tmp_path / f"{name}.npy", array, allow_pickle=False)
    loaded = TifuKNN().load_arrays(
        {path.stem: np.load(path, allow_pickle=False) for path in tmp_path.glob("*.npy")}
    )
    assert loaded.is_fitted
    for user in range(-1, 42):
        for a, b in zip(model.of_user(user, 7), loaded.of_user(user, 7), strict=True):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype
        for a, b in zip(model.own_vector(user), loaded.own_vector(user), strict=True):
            np.testing.assert_array_equal(a, b)


def test_the_same_log_gives_the_same_lists_in_any_blocks_on_any_number_of_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = _big_shop()
    first = _fit(data, k=5, max_item_users=10, threads=1).arrays()
    again = _fit(data, k=5, max_item_users=10, threads=1).arrays()
    monkeypatch.setattr(tifu, "_BLOCK_ROWS", 3)  # many small blocks
    threaded = _fit(data, k=5, max_item_users=10, threads=2).arrays()
    for other in (again, threaded):
        assert sorted(first) == sorted(other)
        for name in first:
            np.testing.assert_array_equal(first[name], other[name])
            assert first[name].dtype == other[name].dtype


def test_refitting_on_another_log_forgets_the_first_one() -> None:
    model = _fit(_big_shop(), k=5, max_item_users=10)
    refit = model.fit(_shop())
    fresh = _fit(_shop(), k=5, max_item_users=10)
    assert refit is model
    for name, array in fresh.arrays().items():
        np.testing.assert_array_equal(model.arrays()[name], array)


def test_fitting_leaves_the_history_untouched() -> None:
    data = _big_shop()
    before = {name: array.copy() for name, array in data.history.arrays().items()}
    _fit(data)
    for name, array in data.history.arrays().items():
        np.testing.assert_array_equal(array, before[name])


def test_learned_arrays_have_the_documented_types() -> None:
    arrays = _fit(_shop(), k=1, max_item_users=2).arrays()
    assert {name: array.dtype.type for name, array in arrays.items()} == {
        "own_indptr": np.int64,
        "own_items": np.int32,
        "own_scores": np.float32,
        "user_list": np.int32,
        "lists_indptr": np.int64,
        "lists_items": np.int32,
        "lists_scores": np.float32,
    }
    assert len(arrays["own_indptr"]) == 4 and len(arrays["user_list"]) == 3


def test_an_unfitted_model_says_so_instead_of_recommending() -> None:
    model = TifuKNN()
    message = "TifuKNN is not fitted yet; call fit() or load its arrays first"
    with pytest.raises(NotFittedError) as of_user_error:
        model.of_user(0, 10)
    assert str(of_user_error.value) == message
    with pytest.raises(NotFittedError) as own_error:
        model.own_vector(0)
    assert str(own_error.value) == message


def test_a_history_of_other_users_than_the_matrix_is_refused() -> None:
    data = _shop()
    bad = FitData.from_matrix(sp.csr_matrix((2, 4), dtype=np.float32), data.history, data.now)
    with pytest.raises(ValueError) as error:
        TifuKNN().fit(bad)
    assert str(error.value) == (
        "tifu: the history has 3 users but the matrix has 2; build both from the same user id map"
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"alpha": 1.5}, "models.tifu.alpha must be in [0, 1] (got 1.5)"),
        ({"alpha": -0.1}, "models.tifu.alpha must be in [0, 1] (got -0.1)"),
        ({"within_decay": 0.0}, "models.tifu.within_decay must be in (0, 1] (got 0.0)"),
        ({"group_decay": 1.2}, "models.tifu.group_decay must be in (0, 1] (got 1.2)"),
        ({"group_size": 0}, "models.tifu.group_size must be > 0 (got 0)"),
        ({"k": 0}, "models.tifu.k must be > 0 (got 0)"),
        ({"candidates": -1}, "models.tifu.candidates must be > 0 (got -1)"),
        ({"min_baskets": 0}, "models.tifu.min_baskets must be > 0 (got 0)"),
        ({"threads": -1}, "models.tifu.threads must be >= 0 (got -1)"),
        (
            {"k": 100},
            "models.tifu.max_item_users must be > k (100) (got 100); raise it with k",
        ),
        ({"events": ()}, "models.tifu.events must name at least one event type (got ())"),
        (
            {"events": ("purchase", "click")},
            "models.tifu.events: unknown event type 'click' "
            "(expected one of ('view', 'cart', 'favourite', 'purchase', 'return'))",
        ),
        (
            {"events": ("purchase", "return")},
            "models.tifu.events: returns are not baskets; remove 'return'",
        ),
    ],
)
def test_a_bad_setting_is_refused_with_its_key_and_value(
    config: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        TifuConfig(**config)  # type: ignore[arg-type]
    assert str(error.value) == message


def _reference(data: FitData, config: TifuConfig) -> dict[int, dict[int, float]]:
    """Every user's scores by the definition, one user and one basket at a time."""
    history, n_items = data.history, data.n_items
    vectors: dict[int, np.ndarray] = {}
    for u in range(history.n_users):
        lo, hi = history.indptr[u], history.indptr[u + 1]
        baskets: dict[tuple[int, int], tuple[int, set[int]]] = {}
        for j in range(lo, hi):
            if history.events[j] != E.PURCHASE:
                continue
            code, t = int(history.baskets[j]), int(history.timestamps[j])
            key = (0, code) if code >= 0 else (1, t // DAY)
            first, bought = baskets.get(key, (t, set()))
            baskets[key] = (min(first, t), bought | {int(history.items[j])})
        if len(baskets) < config.min_baskets:
            continue
        newest_first = sorted(baskets, key=lambda key: (baskets[key][0], key))[::-1]
        groups: dict[int, list[np.ndarray]] = {}
        for age, key in enumerate(newest_first):
            basket = np.zeros(n_items)
            basket[list(baskets[key][1])] = config.within_decay ** (age % config.group_size)
            groups.setdefault(age // config.group_size, []).append(basket)
        vectors[u] = sum(
            config.group_decay**g * np.mean(members, axis=0) for g, members in groups.items()
        ) / len(groups)
    scores: dict[int, dict[int, float]] = {}
    for u, own in vectors.items():
        similar = sorted(
            (-round(float(own @ v / np.linalg.norm(own) / np.linalg.norm(v)), 7), w)
            for w, v in vectors.items()
            if w != u and own @ v > 0
        )[: config.k]
        score = config.alpha * own
        if similar:
            score = score + (1 - config.alpha) * np.mean([vectors[w] for _, w in similar], axis=0)
        scores[u] = {int(i): float(score[i]) for i in np.flatnonzero(score)}
    return scores


@pytest.mark.parametrize("seed", range(12))
def test_scores_match_a_plain_reading_of_the_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    items = [f"i{j}" for j in range(10)]
    rows: list[Row] = []
    for u in range(int(rng.integers(2, 30))):
        for _ in range(int(rng.integers(1, 8))):
            day = float(rng.integers(0, 20)) + float(rng.random())
            basket = f"b{rng.integers(0, 6)}" if rng.random() < 0.3 else None
            event = E.PURCHASE if rng.random() < 0.85 else E.VIEW
            rows.append((f"u{u}", items[int(rng.integers(0, 10))], event, day, basket))
    data = _data(rows, items)
    config = TifuConfig(
        group_size=int(rng.integers(1, 4)),
        k=int(rng.integers(1, 6)),
        alpha=float(rng.choice([0.0, 0.3, 0.7])),
        min_baskets=int(rng.integers(1, 3)),
        candidates=10,  # every item: nothing is cut off
        max_item_users=100,  # every buyer: the search is exact
    )
    model = TifuKNN(config).fit(data)
    expected = _reference(data, config)
    for user in range(data.n_users):
        got, scores = model.of_user(user, 10)
        assert user in expected or len(got) == 0
        if user in expected:
            assert dict(zip(got.tolist(), scores.tolist(), strict=True)) == pytest.approx(
                expected[user], rel=1e-5
            )
            # best first; equal scores by item index
            assert all(np.lexsort((got, -scores)) == np.arange(len(got)))


@pytest.mark.slow
def test_a_large_heavy_tailed_log_fits_and_every_buyer_gets_a_sane_list() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 200_000, 40_000
    counts = np.minimum(rng.zipf(2.1, n_users), 3_000)
    counts[:5] = 3_000  # a few wholesalers (or bots)
    total = int(counts.sum())
    popularity = 1.0 / (np.arange(n_items) + 5.0)
    items = rng.choice(n_items, total, p=popularity / popularity.sum()).astype(np.int32)
    times = MIDNIGHT + rng.integers(0, 365 * DAY, total)
    owner = np.repeat(np.arange(n_users), counts)
    order = np.lexsort((times, owner))
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    history = UserHistory(
        indptr=indptr,
        items=items[order],
        events=np.full(total, E.PURCHASE, dtype=np.int8),
        timestamps=times[order].astype(np.int64),
        quantities=np.ones(total, dtype=np.float32),
        baskets=np.full(total, -1, dtype=np.int64),
    )
    data = FitData.from_matrix(
        sp.csr_matrix((n_users, n_items), dtype=np.float32), history, int(times.max())
    )
    model = TifuKNN().fit(data)
    assert (model.user_list_ >= 0).all()
    lengths = np.diff(model.lists_indptr_)
    assert lengths.min() >= 1 and lengths.max() <= 100
    scores = model.lists_scores_
    assert (scores > 0).all() and (scores <= 1 + 1e-6).all()
    row = np.repeat(np.arange(len(lengths)), lengths)
    assert (np.diff(scores)[row[1:] == row[:-1]] <= 0).all()  # best first in every list
    for user in range(0, n_users, 997):
        listed, _ = model.of_user(user, 20)
        own, weights = model.own_vector(user)
        # Explore scores are at most (1 - alpha) x 1: a strong own item always leads.
        if 0.7 * weights[0] > 0.3 + 1e-6:
            assert listed[0] in own


@pytest.mark.parametrize("seed", range(4))
def test_the_top_of_every_row_is_exact_however_long_the_rows_and_however_many_ties(
    seed: int,
) -> None:
    # Long rows take the histogram shortcut (rows x 137 buckets <= entries); ties are common.
    rng = np.random.default_rng(seed)
    matrix = sp.random(6, 3_000, density=0.3, format="csr", dtype=np.float32, random_state=seed)
    matrix.data = (np.round(matrix.data * 8) / 8) ** int(rng.integers(1, 6))
    k = int(rng.integers(1, 80))
    top = tifu._top_per_row(matrix, k)
    for r in range(matrix.shape[0]):
        lo, hi = matrix.indptr[r], matrix.indptr[r + 1]
        cols, vals = matrix.indices[lo:hi], matrix.data[lo:hi]
        cols, vals = cols[vals > 0], vals[vals > 0]
        best = np.lexsort((cols, -vals))[:k]
        np.testing.assert_array_equal(top.indices[top.indptr[r] : top.indptr[r + 1]], cols[best])
        np.testing.assert_array_equal(top.data[top.indptr[r] : top.indptr[r + 1]], vals[best])
