"""Repurchase cycles: what a customer is due to buy again, and what nobody buys twice."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.config import RepurchaseConfig
from recsys.errors import NotFittedError
from recsys.history import UserHistory
from recsys.ids import IdMap
from recsys.models.base import FitData
from recsys.models.repurchase import Due, RepurchaseModel
from recsys.schema import EventType as E

DAY = 86_400
T = 1_600_000_000

# (user, item, event, day after T, quantity)
Row = tuple[str, str, int, float, float]


def _data(
    rows: list[Row],
    items: list[str],
    categories: list[int] | None = None,
    users: list[str] | None = None,
) -> FitData:
    """FitData of a small log; users default to their order of first appearance."""
    frame = pd.DataFrame(
        [(u, i, int(e), T + round(day * DAY), q) for u, i, e, day, q in rows],
        columns=["user", "item", "event", "timestamp", "quantity"],
    )
    user_map = IdMap(users if users is not None else pd.unique(frame["user"]), name="user")
    item_map = IdMap(items, name="item")
    history = UserHistory.from_events(frame, user_map, item_map)
    matrix = sp.csr_matrix((len(user_map), len(item_map)), dtype=np.float32)
    attributes = {} if categories is None else {"item_category": categories}
    return FitData.from_matrix(matrix, history, int(frame["timestamp"].max()), **attributes)


def _buys(user: str, item: str, *days: float) -> list[Row]:
    return [(user, item, E.PURCHASE, day, 1.0) for day in days]


def _fit(data: FitData, **config: float) -> RepurchaseModel:
    return RepurchaseModel(RepurchaseConfig(**config)).fit(data)  # type: ignore[arg-type]


def _at(day: float) -> int:
    return T + round(day * DAY)


def test_coffee_cycle_is_the_median_of_every_buyers_days_between_orders() -> None:
    rows = [
        *_buys("ann", "coffee", 0, 10, 40),  # 10, 30
        *_buys("bob", "coffee", 0, 20),  # 20
        *_buys("cat", "coffee", 5, 55),  # 50
        *_buys("dan", "coffee", 3),  # bought once: no interval
        *_buys("ann", "tea", 0, 7),  # 7
        *_buys("bob", "tea", 0, 21, 35),  # 21, 14
    ]
    model = _fit(_data(rows, ["coffee", "tea"]))
    np.testing.assert_array_equal(model.item_cycle_days_, [25.0, 14.0])  # (20 + 30) / 2; 14
    assert model.item_intervals_.tolist() == [4, 3]
    assert model.item_buyers_.tolist() == [4, 2]
    np.testing.assert_array_equal(model.item_repeat_rate_, [0.75, 1.0])
    assert model.rebuyable_.tolist() == [True, True]
    # ann: coffee (median of 10 and 30), tea; bob: coffee, tea (median of 21 and 14); dan: none.
    np.testing.assert_array_equal(
        model.pairs_user_cycle_days_, [20.0, 7.0, 20.0, 17.5, 50.0, np.nan]
    )
    assert model.pairs_indptr_.tolist() == [0, 2, 4, 5, 6]
    items, last, occasions = model.purchases(1)
    assert items.tolist() == [0, 1]
    assert last.tolist() == [_at(20), _at(35)]
    assert occasions.tolist() == [2, 3]


def test_split_deliveries_within_a_day_are_one_order_and_a_day_apart_are_two() -> None:
    # 0, 0.8 and 1.6 chain into one order (each less than a day after the one before);
    # the order on day 31 comes exactly one day after day 30's, so it is an order of its own.
    rows = _buys("ann", "coffee", 0, 0.8, 1.6, 30, 31)
    model = _fit(_data(rows, ["coffee"]), min_interval_days=1.0)
    items, last, occasions = model.purchases(0)
    assert items.tolist() == [0]
    assert last.tolist() == [_at(31)]
    assert occasions.tolist() == [3]
    # Intervals run from order to order: 30 days (from day 0's order) and 1 day.
    np.testing.assert_array_equal(model.pairs_user_cycle_days_, [15.5])


def test_lines_of_one_invoice_are_one_order_even_with_no_minimum_interval() -> None:
    rows = _buys("ann", "coffee", 0, 0, 0.5)
    model = _fit(_data(rows, ["coffee"]), min_interval_days=0.0)
    assert model.purchases(0)[2].tolist() == [2]
    np.testing.assert_array_equal(model.pairs_user_cycle_days_, [0.5])


def test_a_fully_returned_order_is_not_a_purchase_and_a_partial_return_changes_nothing() -> None:
    rows = [
        # ann returns day 30's two bags in two parcels: that order never happened.
        *_buys("ann", "coffee", 0),
        ("ann", "coffee", E.PURCHASE, 30, 2.0),
        ("ann", "coffee", E.RETURN, 31, 1.0),
        ("ann", "coffee", E.RETURN, 32, 1.0),
        *_buys("ann", "coffee", 60),
        # bob keeps one of two bags: his day-30 order stands.
        *_buys("bob", "coffee", 0),
        ("bob", "coffee", E.PURCHASE, 30, 2.0),
        ("bob", "coffee", E.RETURN, 31, 1.0),
        # cat returns something bought before the log began, then orders twice.
        ("cat", "coffee", E.RETURN, 0, 1.0),
        *_buys("cat", "coffee", 10, 40),
        # dan sends back the fridge the moment it arrives: he bought nothing.
        *_buys("dan", "fridge", 5),
        ("dan", "fridge", E.RETURN, 5, 1.0),
    ]
    model = _fit(_data(rows, ["coffee", "fridge"]))
    assert model.purchases(0)[1].tolist() == [_at(60)]
    assert model.purchases(0)[2].tolist() == [2]
    np.testing.assert_array_equal(model.pairs_user_cycle_days_, [60.0, 30.0, 30.0])
    assert model.purchases(3)[0].tolist() == []
    assert model.item_buyers_.tolist() == [3, 0]
    np.testing.assert_array_equal(model.item_repeat_rate_, [1.0, np.nan])


def test_a_new_coffee_with_one_repeat_takes_the_cycle_of_coffees() -> None:
    items = ["house blend", "new roast", "espresso", "stray", "mug"]
    rows = [
        *_buys("ann", "house blend", 0, 10),
        *_buys("bob", "house blend", 0, 20, 50),  # house blend: 10, 20, 30 -> its own 20
        *_buys("cat", "new roast", 0, 40),  # one interval: the coffees' 10, 20, 30, 40 -> 25
        *_buys("dan", "stray", 0, 9),  # no category and too few intervals: unknown
        *_buys("eve", "mug", 0, 100),  # mugs: one interval is too few for a category cycle
    ]
    model = _fit(_data(rows, items, categories=[0, 0, 0, -1, 1]), min_intervals=3)
    np.testing.assert_array_equal(model.category_cycle_days_, [25.0, np.nan])
    # espresso was never rebought, yet coffees are: it gets the coffees' cycle too.
    np.testing.assert_array_equal(model.item_cycle_days_, [20.0, 25.0, 25.0, np.nan, np.nan])
    assert model.rebuyable_.tolist() == [True, True, True, False, False]


def test_an_item_many_buy_and_hardly_anyone_rebuys_is_one_off() -> None:
    items = ["fridge", "freezer", "kettle", "toaster"]
    rows: list[Row] = []
    for k in range(4):
        rows += _buys(f"fridge buyer {k}", "fridge", 0)
    for k in range(3):
        rows += _buys(f"freezer buyer {k}", "freezer", 0)
    for k in range(5):
        rows += _buys(f"kettle buyer {k}", "kettle", *((0, 300) if k == 0 else (0,)))
    for k in range(4):
        rows += _buys(f"toaster buyer {k}", "toaster", *((0, 400) if k == 0 else (0,)))
    data = _data(rows, items, categories=[-1, -1, 0, 0])
    model = _fit(data, one_off_min_buyers=4, one_off_rate=0.25, min_intervals=1)
    assert model.item_buyers_.tolist() == [4, 3, 5, 4]
    np.testing.assert_array_equal(
        model.item_repeat_rate_, np.array([0.0, 0.0, 0.2, 0.25], dtype=np.float32)
    )
    # fridge: exactly the minimum of buyers, none rebought; freezer: too few buyers to judge;
    # kettle: 1 in 5 rebought, below the rate; toaster: 1 in 4, exactly the rate, is not one-off.
    assert model.one_off_.tolist() == [True, False, True, False]
    # freezer is not one-off but has no cycle to go by, so it is not offered again either.
    assert model.rebuyable_.tolist() == [False, False, False, True]
    # Even the one kettle rebuyer is not reminded of it a cycle later.
    kettle_rebuyer = 7  # after 4 fridge and 3 freezer buyers
    assert model.purchases(kettle_rebuyer)[2].tolist() == [2]
    assert len(model.due(kettle_rebuyer, _at(600))) == 0


def _monthly_coffee() -> FitData:
    rows = [
        *_buys("bob", "coffee", 0, 30),
        *_buys("cat", "coffee", 0, 30),
        *_buys("dan", "coffee", 0, 30),
        *_buys("ann", "coffee", 0),
    ]
    return _data(rows, ["coffee"])


@pytest.mark.parametrize(
    ("now", "is_due"),
    [
        (_at(24) - 1, False),  # just under 0.8 of a 30-day cycle
        (_at(24), True),  # exactly due_from
        (_at(90), True),  # exactly due_until
        (_at(90) + 1, False),  # the need has lapsed
    ],
)
def test_coffee_bought_every_30_days_is_due_from_day_24_until_day_90(
    now: int, is_due: bool
) -> None:
    model = _fit(_monthly_coffee(), due_from=0.8, due_until=3.0)
    due = model.due(3, now)
    assert due.items.tolist() == ([0] if is_due else [])


def test_coffee_bought_a_month_ago_is_due_with_full_score_and_its_reason() -> None:
    model = _fit(_monthly_coffee())
    due = model.due(3, _at(30))
    assert due.items.tolist() == [0]
    assert due.scores.tolist() == [1.0]
    assert due.cycle_days.tolist() == [30.0]
    assert due.days_since.tolist() == [30.0]
    for array, dtype in zip(
        (due.items, due.scores, due.cycle_days, due.days_since),
        (np.int32, np.float32, np.float32, np.float32),
        strict=True,
    ):
        assert array.dtype == dtype


def test_a_customer_who_rebuys_every_10_days_is_reminded_on_their_own_rhythm() -> None:
    rows = [
        *_buys("ann", "coffee", 0, 10, 20),  # her own 10, 10: she is due on day 30
        *_buys("bob", "coffee", 0, 30),
        *_buys("cat", "coffee", 0, 30),
        *_buys("dan", "coffee", 0, 30),
        *_buys("eve", "coffee", 0, 12),  # one interval of her own: the shop's cycle applies
    ]
    model = _fit(_data(rows, ["coffee"]))
    assert model.item_cycle_days_.tolist() == [21.0]  # 10, 10, 12, 30, 30, 30
    ann = model.due(0, _at(30))
    assert ann.cycle_days.tolist() == [10.0]
    assert ann.scores.tolist() == [1.0]
    eve = model.due(4, _at(33))
    assert eve.cycle_days.tolist() == [21.0]
    assert eve.scores.tolist() == [1.0]


def test_the_item_exactly_one_cycle_old_comes_first_then_earlier_then_later() -> None:
    items = ["pods", "filters", "beans", "descaler"]
    rows = [
        *_buys("x", "pods", 0, 10, 20, 30),  # 10-day cycle
        *_buys("y", "filters", 0, 20, 40, 60),  # 20-day cycle
        *_buys("z", "beans", 0, 25, 50, 75),  # 25-day cycle
        *_buys("w", "descaler", 0, 60, 120, 180),  # 60-day cycle
        *_buys("ann", "pods", 0),
        *_buys("ann", "filters", 0),
        *_buys("ann", "beans", 0),
        *_buys("ann", "descaler", 0),
    ]
    model = _fit(_data(rows, items))
    due = model.due(4, _at(20))
    # ratios: filters 1.0, beans 0.8, pods 2.0; descaler at 1/3 of its cycle is not due yet.
    assert due.items.tolist() == [1, 2, 0]
    expected = [1.0, math.exp(-(math.log(0.8) ** 2) / 0.5), math.exp(-(math.log(2.0) ** 2) / 0.5)]
    np.testing.assert_allclose(due.scores, expected, rtol=1e-6)
    assert due.days_since.tolist() == [20.0, 20.0, 20.0]
    assert model.due(4, _at(20), n=2).items.tolist() == [1, 2]
    assert model.due(4, _at(20), n=0).items.tolist() == []


def test_equally_due_items_go_to_the_one_bought_more_often_then_the_lower_index() -> None:
    items = ["coffee", "cocoa", "tea"]
    rows: list[Row] = []
    for item in items:
        for other in ("x", "y", "z"):
            rows += _buys(f"{other} {item}", item, 0, 20)
    rows += _buys("ann", "cocoa", 0, 20)  # two orders, one interval: the shop's 20 days apply
    rows += _buys("ann", "tea", 20)
    rows += _buys("ann", "coffee", 20)
    model = _fit(_data(rows, items))
    ann = model.due(9, _at(40))
    assert ann.items.tolist() == [1, 0, 2]
    assert ann.scores.tolist() == [1.0, 1.0, 1.0]


def test_an_item_lapsed_for_years_still_scores_above_zero_in_a_very_wide_window() -> None:
    model = _fit(_data(_buys("ann", "milk", 0, 1, 2, 3), ["milk"]), due_until=5000.0)
    due = model.due(0, _at(3 + 2000))
    assert due.items.tolist() == [0]
    assert due.cycle_days.tolist() == [1.0]
    assert due.scores.tolist() == [float(np.finfo(np.float32).smallest_subnormal)]


def test_a_shop_with_browsing_but_no_sales_yet_learns_nothing_and_reminds_no_one() -> None:
    rows: list[Row] = [("ann", "coffee", E.VIEW, 0, 1.0), ("bob", "tea", E.CART, 1, 1.0)]
    model = _fit(_data(rows, ["coffee", "tea"], categories=[0, 0]))
    assert model.pairs_indptr_.tolist() == [0, 0, 0]
    assert model.item_buyers_.tolist() == [0, 0]
    np.testing.assert_array_equal(model.item_cycle_days_, [np.nan, np.nan])
    np.testing.assert_array_equal(model.category_cycle_days_, [np.nan])
    assert model.rebuyable_.tolist() == [False, False]
    assert len(model.due(0, _at(30))) == 0


def test_an_unknown_or_new_customer_has_nothing_due() -> None:
    model = _fit(_data(_buys("ann", "coffee", 0, 30), ["coffee"], users=["ann", "newcomer"]))
    for user in (-1, 1, 2):
        due = model.due(user, _at(60))
        assert isinstance(due, Due) and len(due) == 0
        assert due.items.dtype == np.int32 and due.scores.dtype == np.float32
    assert [len(a) for a in model.purchases(-1)] == [0, 0, 0]
    assert [len(a) for a in model.purchases(1)] == [0, 0, 0]


def test_an_unfitted_model_says_so_instead_of_recommending() -> None:
    model = RepurchaseModel()
    message = "RepurchaseModel is not fitted yet; call fit() or load its arrays first"
    with pytest.raises(NotFittedError) as due_error:
        model.due(0, T)
    assert str(due_error.value) == message
    with pytest.raises(NotFittedError) as purchases_error:
        model.purchases(0)
    assert str(purchases_error.value) == message


def test_a_history_of_other_users_than_the_matrix_is_refused() -> None:
    data = _monthly_coffee()
    matrix = sp.csr_matrix((2, 1), dtype=np.float32)
    bad = FitData.from_matrix(matrix, data.history, data.now)
    with pytest.raises(ValueError) as error:
        RepurchaseModel().fit(bad)
    assert str(error.value) == (
        "repurchase: the history has 4 users but the matrix has 2; "
        "build both from the same user id map"
    )


def _shop() -> FitData:
    rows = [
        *_buys("ann", "coffee", 0, 10, 20),
        *_buys("ann", "filters", 3, 40),
        *_buys("bob", "coffee", 0, 30),
        *_buys("bob", "filters", 0, 35, 70),
        *_buys("cat", "coffee", 5, 35, 65),
        *_buys("cat", "fridge", 1),
        *_buys("dan", "fridge", 2),
    ]
    return _data(rows, ["coffee", "filters", "fridge"], categories=[0, 0, 1])


def test_a_saved_and_reloaded_model_reminds_everyone_of_the_same_items(tmp_path: Path) -> None:
    model = _fit(_shop())
    for name, array in model.arrays().items():
        np.save(tmp_path / f"{name}.npy", array, allow_pickle=False)
    loaded = RepurchaseModel()
    loaded.load_arrays(
        {path.stem: np.load(path, allow_pickle=False) for path in tmp_path.glob("*.npy")}
    )
    assert loaded.is_fitted
    for user in range(-1, 5):
        for day in (20, 30, 45, 80, 120):
            a, b = model.due(user, _at(day)), loaded.due(user, _at(day))
            for field in ("items", "scores", "cycle_days", "days_since"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
                assert getattr(a, field).dtype == getattr(b, field).dtype


def test_refitting_on_another_log_forgets_the_first_one() -> None:
    model = _fit(_shop())
    refit = model.fit(_monthly_coffee())
    fresh = _fit(_monthly_coffee())
    assert refit is model
    first, second = model.arrays(), fresh.arrays()
    assert sorted(first) == sorted(second)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
        assert first[name].dtype == second[name].dtype


def test_fitting_leaves_the_history_untouched() -> None:
    data = _shop()
    before = {name: array.copy() for name, array in data.history.arrays().items()}
    _fit(data)
    for name, array in data.history.arrays().items():
        np.testing.assert_array_equal(array, before[name])


def test_learned_arrays_have_the_documented_types() -> None:
    model = _fit(_shop())
    expected = {
        "item_cycle_days": np.float32,
        "item_intervals": np.int32,
        "item_buyers": np.int32,
        "item_repeat_rate": np.float32,
        "one_off": np.bool_,
        "rebuyable": np.bool_,
        "category_cycle_days": np.float32,
        "pairs_indptr": np.int64,
        "pairs_item": np.int32,
        "pairs_last": np.int64,
        "pairs_occasions": np.int32,
        "pairs_user_cycle_days": np.float32,
    }
    arrays = model.arrays()
    assert {name: array.dtype.type for name, array in arrays.items()} == expected
    assert len(arrays["pairs_indptr"]) == 5
    assert len(arrays["category_cycle_days"]) == 2
