"""Baselines: "buy again" ranks a customer's own purchases, then fills with popular items."""

from __future__ import annotations

from recsys.baselines import BuyAgain
from recsys.models.popularity import PopularityModel
from recsys.schema import EventType as E
from tests.models_fixtures import fit_data

P, V = E.PURCHASE, E.VIEW
DATA = fit_data(
    [
        ("u1", 0, P, 0),
        ("u1", 1, P, 1),
        ("u1", 1, P, 5),
        ("u1", 2, P, 3),
        ("u1", 3, V, 6),  # viewed, never bought: not "again"
        ("u2", 4, P, 0),
        ("u2", 4, V, 1),
        ("u3", 4, V, 2),
        ("u3", 5, V, 2),
    ],
    items=list(range(6)),
)


def test_buy_again_ranks_by_times_bought_then_recency_then_fills_with_popular() -> None:
    baseline = BuyAgain(DATA.history, PopularityModel().fit(DATA))
    ranked = baseline.rank(0, 5).tolist()
    # item 1 twice; items 2 (day 3) and 0 (day 0) once each, the more recent first.
    assert ranked[:3] == [1, 2, 0]
    assert len(ranked) == 5 and len(set(ranked)) == 5 and ranked[3] == 4  # the most popular


def test_a_visitor_who_never_bought_gets_popular_items() -> None:
    popularity = PopularityModel().fit(DATA)
    baseline = BuyAgain(DATA.history, popularity)
    assert baseline.rank(2, 3).tolist() == popularity.top(3)[0].tolist()
    assert baseline.rank(-1, 3).tolist() == popularity.top(3)[0].tolist()
