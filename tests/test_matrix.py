"""Events become a user x item confidence matrix: weighted, decayed by age, net of returns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recsys.config import MatrixConfig
from recsys.history import UserHistory
from recsys.ids import IdMap
from recsys.matrix import confidence_matrix
from recsys.schema import EventType as E

DAY = 86_400
T = 1_600_000_000


def _events(rows: list[tuple[str, str, int, int, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["user", "item", "event", "timestamp", "quantity"])
    frame["price"] = np.nan
    return frame


LOG = _events(
    [
        ("a", "x", E.VIEW, T, 1),
        ("a", "x", E.VIEW, T + 10, 1),
        ("a", "x", E.CART, T + 20, 1),
        ("a", "y", E.PURCHASE, T + 30, 2),
        ("a", "y", E.RETURN, T + 40, 2),
        ("b", "x", E.PURCHASE, T + 50, 4),
        ("b", "x", E.RETURN, T + 60, 1),
        ("b", "z", E.RETURN, T + 70, 1),
    ]
)
USERS = IdMap(["a", "b"], name="user")
ITEMS = IdMap(["x", "y", "z"], name="item")
WEIGHTS = {"view": 1.0, "cart": 4.0, "favourite": 3.0, "purchase": 10.0}


def _dense(repeats: str, half_life: float = 0.0) -> np.ndarray:
    config = MatrixConfig(weights=WEIGHTS, repeats=repeats, half_life_days=half_life)  # type: ignore[arg-type]
    matrix, _ = confidence_matrix(LOG, USERS, ITEMS, config)
    return matrix.toarray()


def test_each_event_type_counts_with_its_weight_and_every_repeat_counts() -> None:
    expected = np.array([[1 * 2 + 4 * 1, 0, 0], [10 * 0.75, 0, 0]], dtype=np.float32)
    np.testing.assert_allclose(_dense("sum"), expected)


def test_repeats_can_count_once_per_type() -> None:
    np.testing.assert_allclose(_dense("once"), [[1 + 4, 0, 0], [7.5, 0, 0]])


def test_repeats_can_grow_logarithmically() -> None:
    ax = 1 * math.log1p(2) + 4 * math.log1p(1)
    bx = 10 * math.log1p(1) * 0.75
    np.testing.assert_allclose(_dense("log1p"), [[ax, 0, 0], [bx, 0, 0]], rtol=1e-6)


def test_returned_purchases_are_cancelled_and_unmatched_returns_counted() -> None:
    config = MatrixConfig(weights=WEIGHTS, repeats="sum")
    matrix, summary = confidence_matrix(LOG, USERS, ITEMS, config)
    assert matrix.nnz == 2
    assert summary.pairs_cancelled == 1
    assert summary.returns_unmatched == 1
    assert summary.events_used == 8
    assert matrix.dtype == np.float32


def test_older_events_weigh_less_by_the_configured_half_life() -> None:
    log = _events([("a", "x", E.VIEW, T, 1), ("a", "y", E.VIEW, T + DAY, 1)])
    items = IdMap(["x", "y"])
    config = MatrixConfig(weights=WEIGHTS, repeats="sum", half_life_days=1.0)
    matrix, summary = confidence_matrix(log, IdMap(["a"]), items, config)
    np.testing.assert_allclose(matrix.toarray(), [[0.5, 1.0]])
    assert summary.reference_time == T + DAY


def test_decay_reference_time_can_be_fixed_in_the_config() -> None:
    log = _events([("a", "x", E.VIEW, T, 1)])
    config = MatrixConfig(
        weights=WEIGHTS, repeats="sum", half_life_days=2.0, reference_time="2020-09-17T12:26:40Z"
    )  # T + 4 days
    matrix, _ = confidence_matrix(log, IdMap(["a"]), IdMap(["x"]), config)
    np.testing.assert_allclose(matrix.toarray(), [[0.25]])


def test_events_of_users_or_items_outside_the_maps_are_counted_not_crashed() -> None:
    config = MatrixConfig(weights=WEIGHTS, repeats="sum")
    matrix, summary = confidence_matrix(LOG, IdMap(["a"]), IdMap(["x"]), config)
    assert matrix.shape == (1, 1)
    np.testing.assert_allclose(matrix.toarray(), [[6.0]])
    assert summary.events_unmapped == 5


def test_unweighted_event_types_leave_no_trace() -> None:
    log = _events([("a", "x", E.FAVOURITE, T, 1), ("a", "y", E.PURCHASE, T, 1)])
    config = MatrixConfig(weights={"purchase": 1.0}, repeats="sum")
    matrix, _ = confidence_matrix(log, IdMap(["a"]), IdMap(["x", "y"]), config)
    np.testing.assert_allclose(matrix.toarray(), [[0.0, 1.0]])
    assert matrix.nnz == 1


def test_histories_are_time_ordered_per_user() -> None:
    log = _events(
        [
            ("b", "y", E.VIEW, T + 5, 1),
            ("a", "x", E.PURCHASE, T + 9, 3),
            ("a", "y", E.VIEW, T + 1, 1),
            ("a", "y", E.CART, T + 1, 1),
        ]
    )
    history = UserHistory.from_events(log, IdMap(["a", "b"]), IdMap(["x", "y"]))
    items, events, times = history.of(0)
    assert items.tolist() == [1, 1, 0]
    assert events.tolist() == [E.VIEW, E.CART, E.PURCHASE]
    assert times.tolist() == [T + 1, T + 1, T + 9]
    assert history.of(1)[0].tolist() == [1]
    assert history.lengths().tolist() == [3, 1]
    again = UserHistory.from_arrays(history.arrays())
    assert again.of(0)[0].tolist() == [1, 1, 0]
    with pytest.raises(IndexError, match=r"user index 2 is outside 0\.\.1"):
        history.of(2)


def test_a_return_of_something_bought_before_the_log_does_not_cancel_a_later_purchase() -> None:
    log = _events(
        [
            ("a", "x", E.RETURN, T, 1),  # returns an order placed before the log began
            ("a", "x", E.PURCHASE, T + DAY, 1),
            ("a", "y", E.PURCHASE, T, 2),
            ("a", "y", E.RETURN, T + DAY, 1),  # half of the earlier order comes back
        ]
    )
    config = MatrixConfig(weights=WEIGHTS, repeats="sum")
    matrix, summary = confidence_matrix(log, IdMap(["a"]), IdMap(["x", "y"]), config)
    np.testing.assert_allclose(matrix.toarray(), [[10.0, 5.0]])
    assert summary.returns_unmatched == 1
