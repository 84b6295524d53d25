"""Id maps turn the shop's ids into dense indices and back, and report unknown ids as -1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.errors import UnknownIdError
from recsys.ids import IdMap


def test_ids_map_to_sorted_dense_indices_whatever_their_order_in_the_log() -> None:
    a = IdMap.from_values([30, 10, 20, 10])
    b = IdMap.from_values([20, 30, 10])
    assert a == b
    assert a.index([10, 20, 30]).tolist() == [0, 1, 2]
    assert a.lookup([2, 0]).tolist() == [30, 10]
    assert a.dtype == "int64"


def test_unknown_ids_become_minus_one_or_a_clear_error() -> None:
    ids = IdMap.from_values(["85123A", "22423"], name="item")
    assert ids.index(["22423", "nope", "85123A"]).tolist() == [0, -1, 1]
    assert ids.index_of("nope") == -1
    assert ids.index_of("85123A") == 1
    with pytest.raises(UnknownIdError) as err:
        ids.index(["nope", "zzz"], strict=True)
    assert str(err.value) == "2 item ids are not known to the model (first: 'nope')"


def test_index_outside_the_map_is_an_index_error() -> None:
    with pytest.raises(IndexError, match=r"item map: index 5 is outside 0\.\.1"):
        IdMap(["a", "b"], name="item").lookup([5])


@pytest.mark.parametrize("ids", [[17850, 12346, 9], ["85123A", "007", "POST"]])
def test_maps_round_trip_through_parquet_keeping_the_id_type(tmp_path: Path, ids: list) -> None:
    original = IdMap.from_values(ids, name="user")
    original.save(tmp_path / "users.parquet")
    again = IdMap.load(tmp_path / "users.parquet", name="user")
    assert again == original
    assert again.dtype == original.dtype
    assert again.index(ids).tolist() == original.index(ids).tolist()


def test_duplicate_or_missing_ids_are_refused() -> None:
    with pytest.raises(ValueError, match=r"user map: id 'a' appears more than once"):
        IdMap(["a", "b", "a"], name="user")
    with pytest.raises(ValueError, match=r"user map: ids must not be missing"):
        IdMap(np.array([1.0, np.nan]), name="user")
