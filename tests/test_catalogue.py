"""The item catalogue and user attributes load in the shop's own layout, every row counted."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recsys.catalogue import load_catalogue, load_users
from recsys.ingest import load_events
from tests.conftest import CLICKS, make_config, write_csv


def test_wide_catalogue_keeps_each_items_latest_row_and_rejects_bad_ones(tmp_path: Path) -> None:
    write_csv(tmp_path / "events.csv", "user,item,ts,event\n1,10,1700000000,view")
    write_csv(
        tmp_path / "items.csv",
        """sku,cat,brand,price,in_stock,added
        10,shoes,acme,59.9,1,2023-01-05
        11,socks,acme,4.5,no,2023-02-01
        10,shoes,acme,49.9,yes,2023-01-05
        ,socks,x,1,1,2023-01-01
        12,socks,x,-3,1,2023-01-01
        13,hats,,oops,0,not a date""",
    )
    items = {
        "path": "items.csv",
        "timestamp_unit": "datetime",
        "columns": {
            "item": "sku",
            "category": "cat",
            "brand": "brand",
            "price": "price",
            "available": "in_stock",
            "created": "added",
        },
    }
    catalogue = load_catalogue(make_config(tmp_path, CLICKS, items=items))
    assert catalogue is not None
    frame = catalogue.frame
    assert frame.index.tolist() == [10, 11]
    assert frame.loc[10, "price"] == 49.9
    assert bool(frame.loc[10, "available"]) is True
    assert bool(frame.loc[11, "available"]) is False
    assert frame.loc[11, "category"] == "socks"
    assert frame.loc[10, "created"] == 1_672_876_800
    report = catalogue.report
    assert report.rows_read == 6
    assert report.rejected == {
        "bad_price": 1,
        "duplicate": 1,
        "missing_item": 1,
        "negative_price": 1,
    }
    rejects = pd.read_csv(tmp_path / "rejects" / "items.rejects.csv")
    assert sorted(rejects["reason"]) == ["bad_price", "missing_item", "negative_price"]


def test_retailrocket_item_properties_give_each_items_latest_category_and_availability(
    tmp_path: Path,
) -> None:
    write_csv(tmp_path / "events.csv", "user,item,ts,event\n1,10,1700000000,view")
    write_csv(
        tmp_path / "props.csv",
        """timestamp,itemid,property,value
        1435460400000,10,categoryid,1338
        1441508400000,10,available,1
        1439089200000,10,790,n12000.000
        1442113200000,10,available,0
        1431226800000,11,categoryid,491
        1433041200000,11,categoryid,1277
        1433041200000,,categoryid,1""",
    )
    items = {
        "path": "props.csv",
        "layout": "properties",
        "properties": {"category": "categoryid", "available": "available"},
    }
    catalogue = load_catalogue(make_config(tmp_path, CLICKS, items=items))
    assert catalogue is not None
    assert catalogue.frame.index.tolist() == [10, 11]
    assert catalogue.frame["category"].tolist() == [1338, 1277]
    assert catalogue.frame["available"].tolist() == [False, pd.NA]
    assert catalogue.report.rows_read == 7
    assert catalogue.report.accepted == 3
    assert catalogue.report.rejected == {
        "missing_item": 1,
        "other_property": 1,
        "superseded": 2,
    }


def test_catalogue_is_derived_from_event_rows_that_carry_a_category(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "events.csv",
        """user_id,item_id,category_id,behavior_type,timestamp
        1,2268318,2520377,pv,1511544070
        1,2333346,2520771,pv,1511561733
        2,2268318,2520378,buy,1511572885""",
    )
    events = {
        "path": "events.csv",
        "event_types": {"pv": "view", "buy": "purchase"},
        "columns": {
            "user": "user_id",
            "item": "item_id",
            "category": "category_id",
            "event": "behavior_type",
            "timestamp": "timestamp",
        },
    }
    config = make_config(tmp_path, events)
    log = load_events(config)
    catalogue = load_catalogue(config, log.frame)
    assert catalogue is not None
    assert catalogue.frame["category"].to_dict() == {2268318: 2520378, 2333346: 2520771}


def test_user_attributes_keep_every_other_column_by_default(tmp_path: Path) -> None:
    write_csv(tmp_path / "events.csv", "user,item,ts,event\n1,10,1700000000,view")
    write_csv(
        tmp_path / "users.csv",
        """id,region,age_band
        1,north,25-34
        2,south,35-44
        ,east,18-24
        1,west,25-34""",
    )
    users = load_users(make_config(tmp_path, CLICKS, users={"path": "users.csv", "user": "id"}))
    assert users is not None
    assert users.frame.to_dict("index") == {
        1: {"region": "west", "age_band": "25-34"},
        2: {"region": "south", "age_band": "35-44"},
    }
    assert users.report.rejected == {"duplicate": 1, "missing_user": 1}
    assert users.report.rows_read == 4


def test_user_attributes_can_be_limited_to_named_columns(tmp_path: Path) -> None:
    write_csv(tmp_path / "events.csv", "user,item,ts,event\n1,10,1700000000,view")
    write_csv(tmp_path / "users.csv", "id,region,email\n1,north,a@b.c")
    source = {"path": "users.csv", "user": "id", "attributes": ["region"]}
    users = load_users(make_config(tmp_path, CLICKS, users=source))
    assert users is not None
    assert list(users.frame.columns) == ["region"]


def test_a_bad_later_row_does_not_hide_an_items_good_row(tmp_path: Path) -> None:
    write_csv(tmp_path / "events.csv", "user,item,ts,event\n1,10,1700000000,view")
    write_csv(tmp_path / "items.csv", "sku,price\n11,7.0\n11,-1")
    items = {"path": "items.csv", "columns": {"item": "sku", "price": "price"}}
    catalogue = load_catalogue(make_config(tmp_path, CLICKS, items=items))
    assert catalogue is not None
    assert catalogue.frame["price"].to_dict() == {11: 7.0}
    assert catalogue.report.rejected == {"negative_price": 1}


def test_text_catalogue_ids_meet_whole_number_log_ids_without_merging_007_and_7(
    tmp_path: Path,
) -> None:
    from training.dataset import build_dataset, fit_data

    write_csv(
        tmp_path / "events.csv", "user,item,ts,event\n1,7,1700000000,view\n2,8,1700000000,view"
    )
    write_csv(tmp_path / "items.csv", "sku,cat\n7,shoes\n007,hats\nX9,socks\n8,socks")
    items = {"path": "items.csv", "columns": {"item": "sku", "category": "cat"}}
    config = make_config(tmp_path, CLICKS, items=items)
    dataset = build_dataset(config)
    assert dataset.items.ids.tolist() == [7, 8]  # "007" and "X9" match no whole-number id
    data = fit_data(dataset, config)
    categories = data.extra["category_ids"]
    assert [categories[c] for c in data.item_category] == ["shoes", "socks"]
