"""The blend: each strategy's share of a list, with exact scores on hand-built models."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.blend import SOURCES, Blender, Strategies
from recsys.config import BlendConfig
from recsys.models.copurchase import CoPurchase
from recsys.models.neighbours import ItemNeighbours
from recsys.models.popularity import PopularityModel
from recsys.schema import EventType as E
from tests.models_fixtures import DAY, T0, fit_data

# Items 0..5. Viewing 0 suggests 1 (neighbour); buying 0 suggests 2 (complement).
DATA = fit_data(
    [
        ("u1", 0, E.VIEW, 0),
        ("u1", 3, E.VIEW, 1),
        ("u2", 4, E.VIEW, 2),
        ("u2", 5, E.VIEW, 3),
        ("u2", 1, E.VIEW, 3),
        ("u2", 2, E.VIEW, 3),
    ],
    items=list(range(6)),
)


def _strategies() -> Strategies:
    neighbours = ItemNeighbours()
    neighbours.similarity_ = sp.csr_matrix(([0.8, 0.4], ([0, 3], [1, 4])), shape=(6, 6))
    copurchase = CoPurchase()
    copurchase.complements_ = sp.csr_matrix(([3.0], ([0], [2])), shape=(6, 6))
    copurchase.item_transactions_ = np.ones(6, dtype=np.int32)
    return Strategies.from_models(
        DATA.history,
        {
            "popularity": PopularityModel().fit(DATA),
            "neighbours": neighbours,
            "copurchase": copurchase,
        },
    )


def test_a_visits_complements_count_half_as_much_as_its_neighbours() -> None:
    blend = Blender(_strategies(), BlendConfig(session=2.0))
    ranked = blend.rank(-1, DATA.now, 5, session=np.array([0]), only="session")
    scores = dict(zip(ranked.items.tolist(), ranked.scores.tolist(), strict=True))
    assert scores == {1: 1.0, 2: 0.5}
    assert [SOURCES[s] for s in ranked.sources] == ["session", "session"]
    assert ranked.seeds.tolist() == [0, 0]


def test_each_strategy_is_scaled_to_one_then_weighted_and_summed_per_item() -> None:
    config = BlendConfig(neighbours=1.0, popular=0.5, session=2.0, recency_half_life_days=1.0)
    blend = Blender(_strategies(), config)
    # u1 viewed 0 two days ago and 3 a day ago: weights 1/4 and 1/2 by a one-day half-life.
    now = T0 + 2 * DAY
    ranked = blend.rank(0, now, 6, only="neighbours")
    expected = {1: 0.8 * 0.25, 4: 0.4 * 0.5}
    top = max(expected.values())
    got = dict(zip(ranked.items.tolist(), ranked.scores.tolist(), strict=True))
    assert got.keys() == expected.keys()
    for item, value in expected.items():
        assert np.isclose(got[item], value / top)
    # In the full blend the same item gathers every strategy's share.
    full = blend.rank(0, now, 6, session=np.array([0]))
    scores = dict(zip(full.items.tolist(), full.scores.tolist(), strict=True))
    assert scores[1] > scores[4] and scores[1] > scores[2]


def test_an_excluded_or_filtered_item_leaves_the_list_and_the_next_one_moves_up() -> None:
    blend = Blender(_strategies())
    ranked = blend.rank(-1, DATA.now, 5, session=np.array([0]))
    assert ranked.items[0] == 1
    without = blend.rank(-1, DATA.now, 5, session=np.array([0]), exclude=np.array([1]))
    assert 1 not in without.items.tolist() and without.items[0] == 2
    only_even = blend.rank(
        -1, DATA.now, 5, session=np.array([0]), keep=lambda items: items % 2 == 0
    )
    assert only_even.items.tolist() and all(i % 2 == 0 for i in only_even.items.tolist())


def test_what_a_customer_bought_before_comes_back_by_times_bought_and_recency() -> None:
    data = fit_data(
        [
            ("u1", 0, E.PURCHASE, 0),
            ("u1", 0, E.PURCHASE, 5),
            ("u1", 1, E.PURCHASE, 9),
            ("u1", 2, E.VIEW, 9),  # viewed, never bought: not "before"
            ("u2", 3, E.PURCHASE, 9),
        ],
        items=list(range(6)),
    )
    strategies = Strategies.from_models(data.history, {"popularity": PopularityModel().fit(data)})
    now = T0 + 10 * DAY
    # Reminders (item 2, viewed) are another part: off here.
    config = BlendConfig(recency_half_life_days=10.0, popular=0.0, reminder=0.0)
    ranked = Blender(strategies, config).rank(0, now, 5)
    # item 0: twice, last 5 days ago (2 x 2^-0.5 = 1.41); item 1: once, a day ago (0.93).
    assert ranked.items.tolist() == [0, 1]
    assert [SOURCES[s] for s in ranked.sources] == ["repurchase", "repurchase"]
    assert ranked.scores[0] == pytest.approx(config.bought_before)
    off = Blender(strategies, BlendConfig(bought_before=0.0, popular=0.0, reminder=0.0)).rank(
        0, now, 5
    )
    assert len(off) == 0
