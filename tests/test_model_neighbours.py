"""'People who viewed this also viewed': item neighbours from co-occurrence in histories."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.config import NeighboursConfig
from recsys.errors import NotFittedError
from recsys.models.neighbours import ItemNeighbours, sum_rows
from recsys.schema import EventType as E
from tests.models_fixtures import fit_data

# Items 0 and 1 are viewed together by two users, 1 and 2 by one; 3 alone.
DATA = fit_data(
    [
        ("u0", 0, E.VIEW, 0),
        ("u0", 1, E.VIEW, 0),
        ("u1", 0, E.VIEW, 0),
        ("u1", 1, E.VIEW, 0),
        ("u2", 1, E.VIEW, 0),
        ("u2", 2, E.VIEW, 0),
        ("u3", 3, E.VIEW, 0),
    ]
)


def test_cosine_neighbours_are_ranked_by_shared_viewers() -> None:
    model = ItemNeighbours(NeighboursConfig(k=5)).fit(DATA)
    items, sims = model.similar(1, 10)
    assert items.tolist() == [0, 2]
    np.testing.assert_allclose(sims, [2 / np.sqrt(2 * 3), 1 / np.sqrt(3)], rtol=1e-5)
    assert model.similar(0, 10)[0].tolist() == [1]
    assert model.similar(3, 10)[0].tolist() == []


def test_an_item_is_never_its_own_neighbour_and_k_caps_the_list() -> None:
    model = ItemNeighbours(NeighboursConfig(k=1)).fit(DATA)
    assert model.similar(1, 10)[0].tolist() == [0]
    assert all(i not in model.similar(i, 10)[0] for i in range(4))


def test_bm25_weighting_is_available() -> None:
    model = ItemNeighbours(NeighboursConfig(k=5, method="bm25")).fit(DATA)
    assert model.similar(1, 10)[0].tolist()[0] == 0


def test_unknown_item_has_no_neighbours_rather_than_an_error() -> None:
    model = ItemNeighbours().fit(DATA)
    assert model.similar(-1, 5)[0].tolist() == []
    assert model.similar(99, 5)[0].tolist() == []


def test_neighbours_of_a_history_sum_weighted_similarities() -> None:
    model = ItemNeighbours(NeighboursConfig(k=5)).fit(DATA)
    items, scores, seeds = model.score_items(np.array([0, 2]), np.array([1.0, 0.5]))
    assert items.tolist() == [1]
    np.testing.assert_allclose(scores, [2 / np.sqrt(6) + 0.5 / np.sqrt(3)], rtol=1e-5)
    assert seeds.tolist() == [0]  # item 0 contributed most to item 1
    empty = sum_rows(model.similarity_, np.array([], dtype=np.int64), np.array([]))
    assert empty[0].tolist() == []


def test_neighbours_survive_a_save_and_load_round_trip() -> None:
    model = ItemNeighbours(NeighboursConfig(k=5)).fit(DATA)
    again = ItemNeighbours(NeighboursConfig(k=5)).load_arrays(model.arrays())
    assert again.similar(1, 10)[0].tolist() == [0, 2]


def test_unfitted_model_says_so() -> None:
    with pytest.raises(NotFittedError) as err:
        ItemNeighbours().similar(0, 5)
    assert str(err.value) == (
        "ItemNeighbours is not fitted yet; call fit() or load its arrays first"
    )
