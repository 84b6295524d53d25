"""'Frequently bought together': complementary items from baskets or users' purchase histories."""

from __future__ import annotations

import numpy as np

from recsys.config import CoPurchaseConfig
from recsys.models.copurchase import CoPurchase
from recsys.schema import EventType as E
from tests.models_fixtures import fit_data

P = E.PURCHASE
# Baskets: B1 {a, b}, B2 {a, b, c}, B3 {a, c}, B4 {d}; items a=0, b=1, c=2, d=3.
DATA = fit_data(
    [
        ("u1", 0, P, 0, "B1"),
        ("u1", 1, P, 0, "B1"),
        ("u2", 0, P, 1, "B2"),
        ("u2", 1, P, 1, "B2"),
        ("u2", 2, P, 1, "B2"),
        ("u3", 0, P, 2, "B3"),
        ("u3", 2, P, 2, "B3"),
        ("u3", 3, P, 3, "B4"),
        ("u4", 3, E.VIEW, 3, "B5"),
    ]
)


def test_pairs_below_minimum_support_are_dropped_and_the_rest_scored_by_lift() -> None:
    model = CoPurchase(CoPurchaseConfig(unit="basket", min_support=2)).fit(DATA)
    items, scores = model.complements(0, 10)
    assert items.tolist() == [1, 2]  # tie on lift: lower index first
    np.testing.assert_allclose(scores, [2 * 4 / (3 * 2)] * 2, rtol=1e-6)
    assert model.complements(1, 10)[0].tolist() == [0]  # b-c was seen once only
    assert model.complements(3, 10)[0].tolist() == []
    assert model.item_transactions_.tolist() == [3, 2, 2, 1]


def test_confidence_scoring_is_directional() -> None:
    model = CoPurchase(CoPurchaseConfig(unit="basket", min_support=2, score="confidence")).fit(DATA)
    np.testing.assert_allclose(model.complements(0, 1)[1], [2 / 3], rtol=1e-6)
    np.testing.assert_allclose(model.complements(1, 1)[1], [1.0], rtol=1e-6)


def test_by_user_the_whole_purchase_history_is_one_transaction() -> None:
    model = CoPurchase(CoPurchaseConfig(unit="user", min_support=1)).fit(DATA)
    # u3 bought a, c and (later) d: d now complements a and c.
    assert set(model.complements(3, 10)[0].tolist()) == {0, 2}


def test_views_do_not_count_as_purchases_unless_configured() -> None:
    views = CoPurchase(CoPurchaseConfig(unit="user", min_support=1, events=("purchase", "view")))
    model = views.fit(DATA)
    assert model.item_transactions_.tolist()[3] == 2


def test_bulk_transactions_form_no_pairs() -> None:
    model = CoPurchase(CoPurchaseConfig(unit="basket", min_support=1, max_transaction_items=2))
    fitted = model.fit(DATA)
    # B2 has three items: it no longer pairs a-b, a-c or b-c; B1 and B3 still do.
    assert fitted.complements(1, 10)[0].tolist() == [0]
    assert fitted.complements(2, 10)[0].tolist() == [0]
