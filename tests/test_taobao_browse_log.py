"""A Taobao UserBehavior browse log loads as published and feeds the browse-aware blend.

The shipped data/configs/taobao.toml reads the log in its original shape (user_id, item_id,
category_id, behavior_type in pv/cart/fav/buy, Unix-second timestamps) in China Standard Time,
takes each item's category from its events and sets aside rows outside the dataset's window.
The hand-built logs here go through that same configuration; the last test reads the real
927-user sample when the shared datasets folder has it.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from recsys.blend import SOURCES, Blender, Strategies
from recsys.config import BlendConfig, Config, config_from_dict, load_config
from recsys.errors import EventsSchemaError
from recsys.models.copurchase import CoPurchase
from recsys.models.neighbours import ItemNeighbours
from recsys.models.popularity import PopularityModel
from recsys.schema import EVENT_TYPES
from recsys.schema import EventType as E
from recsys.split import cut_sessions
from tests.conftest import ROOT, shared_file
from tests.models_fixtures import fit_data
from training.dataset import Dataset, build_dataset

TAOBAO_TOML = ROOT / "data" / "configs" / "taobao.toml"
COLUMNS = ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]
CST = ZoneInfo("Asia/Shanghai")
MINUTE = 60


def utc(text: str) -> int:
    """Unix seconds of a UTC wall-clock time."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def cst(text: str) -> int:
    """Unix seconds of a China Standard Time wall-clock time."""
    return int(datetime.fromisoformat(text).replace(tzinfo=CST).timestamp())


def taobao_config(tmp_path: Path, log: str = "UserBehavior.parquet", **changes: Any) -> Config:
    """data/configs/taobao.toml as shipped, reading `log` in tmp_path and writing there."""
    data = tomllib.loads(TAOBAO_TOML.read_text(encoding="utf-8"))
    data["events"]["path"] = log
    data["output"] = {"models": "models", "rejects": "rejects"}
    for section, values in changes.items():
        data[section] = {**data.get(section, {}), **values}
    return config_from_dict(data, base_dir=tmp_path)


def write_log(path: Path, rows: list[tuple[int, int, int, str, int]]) -> Path:
    """Write rows as a Parquet file with exactly the Taobao columns and types."""
    frame = pd.DataFrame(rows, columns=COLUMNS).astype(
        {"user_id": "int64", "item_id": "int64", "category_id": "int64", "timestamp": "int64"}
    )
    frame.to_parquet(path, index=False)
    return path


# Ten rows, one of each situation (file row numbers on the right).
LOG = [
    # 00:30 on 25 Nov in Shanghai (16:30 UTC on the 24th): the window's first half hour.
    (1, 10, 100, "pv", utc("2017-11-24 16:30")),  # 1
    # 23:30 on 24 Nov in Shanghai (15:30 UTC): half an hour before the window opens.
    (1, 10, 100, "pv", utc("2017-11-24 15:30")),  # 2 out_of_window
    (1, 11, 100, "cart", cst("2017-11-26 10:00")),  # 3
    (2, 11, 100, "fav", cst("2017-11-27 10:00")),  # 4
    (2, 12, 200, "buy", cst("2017-11-27 10:05")),  # 5
    (2, 12, 200, "click", cst("2017-11-27 10:06")),  # 6 unknown_event
    # Item 13 moved from category 300 to 301; the file lists its newer event first.
    (3, 13, 301, "pv", cst("2017-11-30 09:00")),  # 7
    (3, 13, 300, "pv", cst("2017-11-28 09:00")),  # 8
    # The last second of 3 Dec in Shanghai is inside; midnight of 4 Dec is not.
    (3, 10, 100, "pv", cst("2017-12-03 23:59:59")),  # 9
    (3, 11, 999, "buy", cst("2017-12-04 00:00")),  # 10 out_of_window
]


@pytest.fixture
def loaded(tmp_path: Path) -> Dataset:
    write_log(tmp_path / "UserBehavior.parquet", LOG)
    return build_dataset(taobao_config(tmp_path), rejects_dir=tmp_path / "rejects")


def test_pv_cart_fav_and_buy_are_read_as_view_cart_favourite_and_purchase(loaded: Dataset) -> None:
    report = loaded.events.report
    assert report.by_event == {"view": 4, "cart": 1, "favourite": 1, "purchase": 1, "return": 0}
    kinds = [EVENT_TYPES[code] for code in loaded.events.frame["event"]]
    assert kinds == ["view", "cart", "favourite", "purchase", "view", "view", "view"]
    assert report.users == 3 and report.items == 4


def test_an_unknown_behaviour_is_set_aside_as_unknown_event(loaded: Dataset) -> None:
    report = loaded.events.report
    assert report.rejected == {"out_of_window": 2, "unknown_event": 1}
    # User 2's buy stays; the click after it does not.
    frame = loaded.events.frame
    assert frame.loc[frame["user"] == 2, "timestamp"].tolist() == [LOG[3][4], LOG[4][4]]


def test_with_strict_validation_an_unknown_behaviour_stops_the_load(tmp_path: Path) -> None:
    # The window is right here; only the click is wrong (row 5 of this file).
    write_log(tmp_path / "UserBehavior.parquet", [LOG[0], *LOG[2:6]])
    config = taobao_config(tmp_path, validation={"on_error": "strict"})
    with pytest.raises(EventsSchemaError) as caught:
        build_dataset(config, rejects_dir=tmp_path / "rejects")
    assert str(caught.value) == (
        "UserBehavior.parquet: column 'behavior_type' has 1 event types not in "
        "events.event_types (first at row 5: 'click'); fix them or set "
        "validation.on_error = 'quarantine' to set such rows aside"
    )


def test_the_window_opens_and_closes_at_midnight_china_standard_time(loaded: Dataset) -> None:
    times = set(loaded.events.frame["timestamp"].tolist())
    assert utc("2017-11-24 16:30") in times  # 00:30 CST on the 25th
    assert utc("2017-11-24 15:30") not in times  # 23:30 CST on the 24th
    assert cst("2017-12-03 23:59:59") in times
    assert cst("2017-12-04 00:00") not in times
    report = loaded.events.report
    assert report.first_time == "2017-11-25T00:30:00+08:00"
    assert report.last_time == "2017-12-03T23:59:59+08:00"


def test_every_row_is_accepted_or_rejected_and_rejects_are_written_with_their_row(
    loaded: Dataset, tmp_path: Path
) -> None:
    report = loaded.events.report
    assert report.rows_read == 10
    assert report.accepted == 7 and report.rejected_total == 3
    assert report.rows_read == report.accepted + report.rejected_total
    rejects = pd.read_csv(tmp_path / "rejects" / "events.rejects.csv")
    assert report.rejects_path == str(tmp_path / "rejects" / "events.rejects.csv")
    # The reason, the file and its 1-based row, then the shop's own columns as they were.
    assert list(rejects.columns[:3]) == ["reason", "file", "row"]
    assert sorted(rejects.columns[3:]) == sorted(COLUMNS)
    assert rejects[["reason", "row", "behavior_type"]].values.tolist() == [
        ["out_of_window", 2, "pv"],
        ["unknown_event", 6, "click"],
        ["out_of_window", 10, "buy"],
    ]
    assert set(rejects["file"]) == {"UserBehavior.parquet"}


def test_each_item_takes_its_category_from_its_latest_accepted_event(loaded: Dataset) -> None:
    catalogue = loaded.catalogue
    assert catalogue is not None
    # 13: the later event (category 301) wins though the file lists it first. 11: the
    # rejected row of category 999 decides nothing.
    assert catalogue.frame["category"].to_dict() == {10: 100, 11: 100, 12: 200, 13: 301}
    assert sorted(loaded.items.ids.tolist()) == [10, 11, 12, 13]


def test_events_29_minutes_apart_are_one_visit_and_31_minutes_apart_start_another(
    tmp_path: Path,
) -> None:
    gap = taobao_config(tmp_path).evaluation.session_gap_minutes * MINUTE
    start = cst("2017-11-26 20:00")
    # One shopper's page views: 29 and 30 minutes apart, then 31; then another shopper.
    users = np.array([1, 1, 1, 1, 2])
    times = np.array(
        [start, start + 29 * MINUTE, start + 59 * MINUTE, start + 90 * MINUTE, start + 91 * MINUTE]
    )
    assert cut_sessions(users, times, gap).tolist() == [0, 0, 0, 1, 2]


# Category reach. Items 0, 1, 2 are phones (category 0), 3 and 4 cases (1), 5 chargers (2).
# "me" browsed phones 0 and 1; phone 2 is the shop's most popular item, but the shoppers who
# bought it never touched 0 or 1, so no neighbour or co-purchase link leads there from me.
PHONES, CASES, CHARGERS = 0, 1, 2
ITEM_CATEGORY = np.array([PHONES, PHONES, PHONES, CASES, CASES, CHARGERS])
Z = 2
REACH_LOG = [
    ("me", 0, E.VIEW, 1),
    ("me", 1, E.VIEW, 2),
    ("me", 1, E.CART, 2),
    ("fan", 0, E.VIEW, 0),
    ("fan", 1, E.PURCHASE, 0),
    ("a", 2, E.PURCHASE, 0),
    ("a", 3, E.PURCHASE, 0),
    ("b", 2, E.PURCHASE, 1),
    ("b", 4, E.VIEW, 1),
    ("c", 2, E.VIEW, 1),
    ("c", 5, E.PURCHASE, 1),
    ("d", 3, E.PURCHASE, 1),
    ("d", 4, E.PURCHASE, 1),
    ("d", 5, E.PURCHASE, 1),
]
ME = 0


@pytest.fixture
def reach() -> tuple[Strategies, int]:
    data = fit_data(
        REACH_LOG,
        users=["me", "fan", "a", "b", "c", "d"],
        items=list(range(6)),
        item_category=ITEM_CATEGORY,
        n_categories=3,
    )
    models = {
        "popularity": PopularityModel().fit(data),
        "neighbours": ItemNeighbours().fit(data),
        "copurchase": CoPurchase().fit(data),
    }
    strategies = Strategies.from_models(
        data.history, models, item_category=ITEM_CATEGORY.astype(np.int64)
    )
    return strategies, data.now


def test_category_reach_brings_a_popular_item_of_the_browsed_category_no_link_leads_to(
    reach: tuple[Strategies, int],
) -> None:
    strategies, now = reach
    blend = Blender(strategies, BlendConfig(category_reach=1.0))
    # Nothing the user did links to z: not their neighbours, not their complements.
    assert Z not in blend.rank(ME, now, 6, only="neighbours").items.tolist()
    assert len(blend.rank(ME, now, 6, only="complementary")) == 0
    ranked = blend.rank(ME, now, 6, only="category_reach")
    # The phones by popularity (view 1, cart 4, favourite 3, purchase 10): z 21, 1 15, 0 2.
    got = dict(zip(ranked.items.tolist(), ranked.scores.tolist(), strict=True))
    assert got == pytest.approx({Z: 1.0, 1: 15 / 21, 0: 2 / 21})
    assert ranked.items[0] == Z
    assert {SOURCES[s] for s in ranked.sources} == {"category_reach"}


def test_category_reach_adds_z_to_the_blend_only_when_it_has_a_weight(
    reach: tuple[Strategies, int],
) -> None:
    strategies, now = reach
    # Popular items left out, so that z can only come in by category reach.
    on = Blender(strategies, BlendConfig(popular=0.0, category_reach=1.0)).rank(ME, now, 6)
    at = on.items.tolist().index(Z)
    assert SOURCES[on.sources[at]] == "category_reach"
    off = Blender(strategies, BlendConfig(popular=0.0)).rank(ME, now, 6)
    assert Z not in off.items.tolist()
    # By default category reach is off: the list has no category_reach item at all.
    default = Blender(strategies).rank(ME, now, 6)
    assert BlendConfig().category_reach == 0
    assert "category_reach" not in {SOURCES[s] for s in default.sources}


def test_category_reach_follows_the_category_the_visitor_browses_most(
    reach: tuple[Strategies, int],
) -> None:
    strategies, now = reach
    # Three looks at cases in this visit (each counting fully) outweigh the two phones of the
    # user's history (each just under 1 by their age).
    blend = Blender(strategies, BlendConfig(reach_categories=1, session_decay=1.0))
    ranked = blend.rank(ME, now, 6, session=np.array([3, 4, 3]), only="category_reach")
    assert set(ranked.items.tolist()) == {3, 4}


@pytest.mark.slow
def test_the_real_taobao_sample_loads_with_every_row_accounted(tmp_path: Path) -> None:
    shared_file("taobao-userbehavior-sample/taobao_userbehavior_sample.parquet")
    config = load_config(TAOBAO_TOML)
    dataset = build_dataset(config, rejects_dir=tmp_path)
    report = dataset.events.report
    assert report.rows_read == 63_735
    assert report.accepted == 63_696
    assert report.rejected == {"out_of_window": 39}
    assert report.rows_read == report.accepted + report.rejected_total
    assert report.by_event == {
        "view": 57_243,
        "cart": 3_365,
        "favourite": 1_707,
        "purchase": 1_381,
        "return": 0,
    }
    assert report.users == 927 == len(dataset.users)
    rejects = pd.read_csv(tmp_path / "events.rejects.csv")
    assert len(rejects) == 39 and set(rejects["reason"]) == {"out_of_window"}
    assert dataset.catalogue is not None
    assert len(dataset.catalogue.frame) == report.items == len(dataset.items)
