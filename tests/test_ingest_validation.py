"""A shop's log is validated row by row: every row is accepted or rejected with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.errors import EventsSchemaError
from recsys.ingest import load_events
from recsys.schema import EventType
from tests.conftest import CLICKS, make_config, write_csv

T0 = 1_700_000_000  # 2023-11-14, a plausible time


def _log(tmp_path: Path, rows: str, **events: object) -> Path:
    return write_csv(tmp_path / "events.csv", "user,item,ts,event\n" + rows)


def test_clean_log_is_accepted_whole_with_canonical_columns(tmp_path: Path) -> None:
    _log(tmp_path, f"1,10,{T0},view\n1,11,{T0 + 5},purchase\n2,10,{T0 + 9},cart")
    log = load_events(make_config(tmp_path, CLICKS))
    assert log.report.rows_read == 3
    assert log.report.accepted == 3
    assert log.report.rejected == {}
    assert list(log.frame.columns) == ["user", "item", "event", "timestamp", "quantity", "price"]
    assert log.frame["user"].tolist() == [1, 1, 2]
    assert log.frame["item"].tolist() == [10, 11, 10]
    assert log.frame["event"].tolist() == [EventType.VIEW, EventType.PURCHASE, EventType.CART]
    assert log.frame["timestamp"].tolist() == [T0, T0 + 5, T0 + 9]
    assert log.frame["quantity"].tolist() == [1.0, 1.0, 1.0]
    assert log.report.by_event == {
        "view": 1,
        "cart": 1,
        "favourite": 0,
        "purchase": 1,
        "return": 0,
    }
    assert log.report.rejects_path is None


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (f",10,{T0},view", "missing_user"),
        (f"3,,{T0},view", "missing_item"),
        ("3,10,abc,view", "bad_timestamp"),
        ("3,10,,view", "bad_timestamp"),
        ("3,10,12,view", "timestamp_out_of_range"),
        ("3,10,99999999999,view", "timestamp_out_of_range"),
        (f"3,10,{T0},click", "unknown_event"),
        (f"3,10,{T0},", "unknown_event"),
    ],
)
def test_each_kind_of_bad_row_is_rejected_with_its_reason(
    tmp_path: Path, row: str, reason: str
) -> None:
    _log(tmp_path, f"1,10,{T0},view\n{row}\n2,11,{T0},purchase")
    log = load_events(make_config(tmp_path, CLICKS))
    assert log.report.rows_read == 3
    assert log.report.accepted == 2
    assert log.report.rejected == {reason: 1}
    rejects = pd.read_csv(tmp_path / "rejects" / "events.rejects.csv")
    assert rejects["reason"].tolist() == [reason]
    assert rejects["row"].tolist() == [2]
    assert rejects["file"].tolist() == ["events.csv"]


def _purchases(tmp_path: Path, rows: str, **extra: object) -> dict[str, object]:
    write_csv(tmp_path / "orders.csv", "invoice,customer,sku,qty,price,when\n" + rows)
    return {
        "path": "orders.csv",
        "timestamp_unit": "datetime",
        "default_event": "purchase",
        "columns": {
            "user": "customer",
            "item": "sku",
            "timestamp": "when",
            "quantity": "qty",
            "price": "price",
            "session": "invoice",
        },
        **extra,
    }


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("A3,7,X,-2,1.0,2011-01-02 10:00", "negative_quantity"),
        ("A3,7,X,two,1.0,2011-01-02 10:00", "bad_quantity"),
        ("A3,7,X,1,-5.5,2011-01-02 10:00", "negative_price"),
        ("A3,7,X,1,cheap,2011-01-02 10:00", "bad_price"),
        ("A3,7,POST,1,18.0,2011-01-02 10:00", "excluded_item"),
        ("A1,7,X,1,1.0,2011-01-01 09:00", "duplicate"),
    ],
)
def test_purchase_log_rows_with_bad_quantities_prices_or_items_are_rejected(
    tmp_path: Path, row: str, reason: str
) -> None:
    events = _purchases(tmp_path, f"A1,7,X,1,1.0,2011-01-01 09:00\n{row}", exclude_items=["POST"])
    log = load_events(make_config(tmp_path, events))
    assert (log.report.accepted, log.report.rejected) == (1, {reason: 1})


def test_row_breaking_several_rules_is_rejected_once_for_the_first_reason(tmp_path: Path) -> None:
    _log(tmp_path, f"1,10,{T0},view\n,,abc,click")
    log = load_events(make_config(tmp_path, CLICKS))
    assert log.report.rejected == {"missing_user": 1}


def test_rows_in_equal_accepted_plus_rejected_on_a_dirty_log(tmp_path: Path) -> None:
    rows = [f"{u},{u % 7},{T0 + u},view" for u in range(1, 40)]
    rows += [f",1,{T0},view", "5,,x,view", f"6,1,{T0},zoom", f"1,1,{T0 + 1},view"]
    _log(tmp_path, "\n".join(rows))
    report = load_events(make_config(tmp_path, CLICKS)).report
    assert report.rows_read == 43
    assert report.accepted + report.rejected_total == report.rows_read
    assert report.rejected == {
        "missing_user": 1,
        "missing_item": 1,
        "unknown_event": 1,
        "duplicate": 1,
    }


def test_strict_policy_raises_naming_file_row_column_value_and_count(tmp_path: Path) -> None:
    _log(tmp_path, f"1,10,{T0},view\n2,10,abc,view\n3,10,,view\n4,10,{T0},view")
    with pytest.raises(EventsSchemaError) as err:
        load_events(make_config(tmp_path, CLICKS), on_error="strict")
    assert str(err.value) == (
        "events.csv: column 'ts' has 2 values that are not times (first at row 2: 'abc'); "
        "fix them or set validation.on_error = 'quarantine' to set such rows aside"
    )


def test_strict_policy_from_config_reports_unknown_event_values(tmp_path: Path) -> None:
    _log(tmp_path, f"1,10,{T0},view\n2,10,{T0},click")
    config = make_config(tmp_path, CLICKS, validation={"on_error": "strict"})
    with pytest.raises(EventsSchemaError, match=r"column 'event' has 1 event types not in "):
        load_events(config)


def test_strict_policy_still_drops_configured_duplicates_and_exclusions(tmp_path: Path) -> None:
    _log(tmp_path, f"1,10,{T0},view\n1,10,{T0},view\n1,99,{T0},view")
    events = dict(CLICKS, exclude_items=["99"])
    log = load_events(make_config(tmp_path, events), on_error="strict")
    assert log.report.rejected == {"excluded_item": 1, "duplicate": 1}


def test_duplicates_can_be_kept_and_then_count_as_accepted(tmp_path: Path) -> None:
    _log(tmp_path, f"1,10,{T0},view\n1,10,{T0},view")
    config = make_config(tmp_path, CLICKS, validation={"duplicates": "keep"})
    log = load_events(config)
    assert (log.report.accepted, log.report.rejected) == (2, {})


def test_quarantined_rows_keep_their_original_values_and_columns(tmp_path: Path) -> None:
    _log(tmp_path, f"1,10,{T0},view\n7,10,yesterday,view")
    load_events(make_config(tmp_path, CLICKS))
    rejects = pd.read_csv(tmp_path / "rejects" / "events.rejects.csv", dtype=str)
    assert rejects.to_dict("records") == [
        {
            "reason": "bad_timestamp",
            "file": "events.csv",
            "row": "2",
            "user": "7",
            "item": "10",
            "ts": "yesterday",
            "event": "view",
        }
    ]


def test_event_names_are_mapped_from_the_shops_own_vocabulary(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "events.csv",
        f"user,item,ts,event\n1,10,{T0},pv\n1,10,{T0 + 1},cart\n"
        f"1,11,{T0 + 2},fav\n1,11,{T0 + 3},buy",
    )
    mapping = {"pv": "view", "cart": "cart", "fav": "favourite", "buy": "purchase"}
    log = load_events(make_config(tmp_path, dict(CLICKS, event_types=mapping)))
    assert log.frame["event"].tolist() == [0, 1, 2, 3]


def test_log_without_event_column_gets_the_default_type(tmp_path: Path) -> None:
    write_csv(tmp_path / "events.csv", f"user,item,ts\n1,10,{T0}\n2,10,{T0}")
    columns = {"user": "user", "item": "item", "timestamp": "ts"}
    events = {"path": "events.csv", "columns": columns, "default_event": "view"}
    log = load_events(make_config(tmp_path, events))
    assert log.frame["event"].tolist() == [EventType.VIEW, EventType.VIEW]


def test_cancelled_invoices_and_negative_quantities_become_returns(tmp_path: Path) -> None:
    rows = (
        "536365,7,X,6,2.5,2011-01-01 09:00\n"
        "C536366,7,X,-6,2.5,2011-01-02 09:00\n"
        "536367,7,Y,-1,0,2011-01-03 09:00\n"
        "536368,7,Z,3,1.0,2011-01-04 09:00"
    )
    rules = [{"column": "invoice", "starts_with": "C"}, {"column": "qty", "less_than": 0}]
    log = load_events(make_config(tmp_path, _purchases(tmp_path, rows, return_rules=rules)))
    assert log.report.rejected == {}
    assert log.frame["event"].tolist() == [
        EventType.PURCHASE,
        EventType.RETURN,
        EventType.RETURN,
        EventType.PURCHASE,
    ]
    assert log.frame["quantity"].tolist() == [6.0, 6.0, 1.0, 3.0]
    assert log.report.returns == 2
    assert log.frame["session"].tolist() == ["536365", "C536366", "536367", "536368"]


def test_float_ids_from_spreadsheets_become_whole_numbers(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "events.csv", f"user,item,ts,event\n17850.0,10,{T0},view\n13047.0,10,{T0},view"
    )
    log = load_events(make_config(tmp_path, CLICKS))
    assert log.frame["user"].tolist() == [17850, 13047]
    assert log.frame["user"].dtype == np.int64


def test_text_ids_keep_letters_and_leading_zeros(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "events.csv",
        f"user,item,ts,event\n007,85123A,{T0},view\n7,22423,{T0},view",
    )
    log = load_events(make_config(tmp_path, CLICKS))
    assert log.frame["user"].tolist() == ["007", "7"]
    assert log.frame["item"].tolist() == ["85123A", "22423"]


@pytest.mark.parametrize(
    ("unit", "value", "expected"),
    [
        ("s", "1700000000", 1_700_000_000),
        ("ms", "1433221332117", 1_433_221_332),
        ("us", "1700000000123456", 1_700_000_000),
        ("ns", "1700000000999999999", 1_700_000_000),
        ("datetime", "2023-11-14T22:13:20Z", 1_700_000_000),
        ("datetime", "2023-11-14 23:13:20+01:00", 1_700_000_000),
    ],
)
def test_timestamps_in_each_configured_unit_become_unix_seconds(
    tmp_path: Path, unit: str, value: str, expected: int
) -> None:
    write_csv(tmp_path / "events.csv", f"user,item,ts,event\n1,10,{value},view")
    log = load_events(make_config(tmp_path, dict(CLICKS, timestamp_unit=unit)))
    assert log.frame["timestamp"].tolist() == [expected]


def test_naive_local_times_are_read_in_the_shops_time_zone(tmp_path: Path) -> None:
    write_csv(tmp_path / "events.csv", "user,item,ts,event\n1,10,2017-11-25 08:00:00,view")
    events = dict(CLICKS, timestamp_unit="datetime")
    log = load_events(make_config(tmp_path, events, timezone="Asia/Shanghai"))
    assert log.frame["timestamp"].tolist() == [1_511_568_000]  # 2017-11-25 00:00 UTC


def test_custom_time_format_is_honoured(tmp_path: Path) -> None:
    write_csv(tmp_path / "events.csv", "user,item,ts,event\n1,10,12/1/2010 8:26,view")
    events = dict(CLICKS, timestamp_unit="datetime", timestamp_format="%m/%d/%Y %H:%M")
    log = load_events(make_config(tmp_path, events))
    assert log.frame["timestamp"].tolist() == [1_291_191_960]


def test_rows_outside_the_configured_window_are_rejected_as_out_of_window(
    tmp_path: Path,
) -> None:
    write_csv(
        tmp_path / "events.csv",
        "user,item,ts,event\n1,10,1511544070,view\n1,11,1505117799,view\n1,12,1512300000,view",
    )
    validation = {"window_start": "2017-11-25", "window_end": "2017-12-02"}
    config = make_config(tmp_path, CLICKS, timezone="Asia/Shanghai", validation=validation)
    log = load_events(config, on_error="strict")
    assert log.report.rejected == {"out_of_window": 2}
    assert log.frame["item"].tolist() == [10]


def test_several_files_load_as_one_log_with_rows_numbered_per_file(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", f"user,item,ts,event\n1,10,{T0},view")
    write_csv(tmp_path / "b.csv", f"user,item,ts,event\n2,AB,{T0},view\n3,11,nope,view")
    events = dict(CLICKS, path=["a.csv", "b.csv"])
    log = load_events(make_config(tmp_path, events))
    assert log.report.files == {"a.csv": 1, "b.csv": 2}
    assert log.frame["item"].tolist() == ["10", "AB"]
    rejects = pd.read_csv(tmp_path / "rejects" / "events.rejects.csv")
    assert rejects[["file", "row"]].to_dict("records") == [{"file": "b.csv", "row": 2}]


def test_parquet_and_gzip_csv_logs_load_like_csv(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"user": [1, 2], "item": ["a", "b"], "ts": [T0, T0 + 1], "event": ["view", "cart"]}
    )
    frame.to_parquet(tmp_path / "events.parquet")
    frame.to_csv(tmp_path / "events.csv.gz", index=False)
    for name in ("events.parquet", "events.csv.gz"):
        log = load_events(make_config(tmp_path, dict(CLICKS, path=name)))
        assert log.frame["item"].tolist() == ["a", "b"], name
        assert log.frame["event"].tolist() == [0, 1], name


def test_parquet_datetime_columns_are_read_in_the_shops_time_zone(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "user": [1.0, 2.0],
            "item": ["a", "b"],
            "ts": pd.to_datetime(["2011-06-01 12:00", "2011-01-01 12:00"]),
            "event": ["view", "view"],
        }
    )
    frame.to_parquet(tmp_path / "events.parquet")
    events = dict(CLICKS, path="events.parquet", timestamp_unit="datetime")
    log = load_events(make_config(tmp_path, events, timezone="Europe/London"))
    # London is on summer time (UTC+1) in June and on UTC in January.
    assert log.frame["timestamp"].tolist() == [1_306_926_000, 1_293_883_200]
    assert log.frame["user"].tolist() == [1, 2]


def test_file_whose_later_rows_break_the_inferred_type_still_validates_per_row(
    tmp_path: Path,
) -> None:
    rows = [f"{u},{u},{T0},view" for u in range(1, 30_001)] + ["9,9,not-a-time,view"]
    _log(tmp_path, "\n".join(rows))
    report = load_events(make_config(tmp_path, CLICKS)).report
    assert (report.accepted, report.rejected) == (30_000, {"bad_timestamp": 1})


def test_only_rows_equal_in_every_column_count_as_duplicates(tmp_path: Path) -> None:
    rows = (
        "A1,7,X,1,,2011-01-01 09:00\n"
        "A1,7,X,1,,2011-01-01 09:00\n"  # same, with an empty price in both
        "A2,7,X,1,,2011-01-01 09:00\n"  # other invoice
        "A1,7,X,2,,2011-01-01 09:00\n"  # other quantity
        "A1,8,X,1,,2011-01-01 09:00"  # other customer
    )
    log = load_events(make_config(tmp_path, _purchases(tmp_path, rows)))
    assert (log.report.accepted, log.report.rejected) == (4, {"duplicate": 1})


def test_a_log_with_no_acceptable_row_is_a_clear_error(tmp_path: Path) -> None:
    _log(tmp_path, f",10,{T0},view\n,11,{T0},view")
    with pytest.raises(EventsSchemaError) as err:
        load_events(make_config(tmp_path, CLICKS))
    assert str(err.value).startswith(
        "events.csv: no row was accepted (2 rows: missing_user 2); see "
    )


def test_returns_named_by_the_event_column_may_carry_negative_quantities(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "events.csv", f"user,item,ts,event,qty\n1,10,{T0},buy,2\n1,10,{T0 + 9},refund,-2"
    )
    events = dict(
        CLICKS,
        event_types={"buy": "purchase", "refund": "return"},
        columns=dict(CLICKS["columns"], quantity="qty"),  # type: ignore[arg-type]
    )
    log = load_events(make_config(tmp_path, events))
    assert log.report.rejected == {}
    assert log.frame["event"].tolist() == [EventType.PURCHASE, EventType.RETURN]
    assert log.frame["quantity"].tolist() == [2.0, 2.0]


def test_integer_event_codes_read_as_floats_still_map(tmp_path: Path) -> None:
    frame = pd.DataFrame({"user": [1, 2], "item": [5, 6], "ts": [T0, T0], "event": [1.0, 2.0]})
    frame.to_parquet(tmp_path / "events.parquet")
    events = dict(CLICKS, path="events.parquet", event_types={"1": "view", "2": "purchase"})
    log = load_events(make_config(tmp_path, events))
    assert log.frame["event"].tolist() == [EventType.VIEW, EventType.PURCHASE]


def test_ids_too_large_for_int64_stay_text_instead_of_failing(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"user": np.array([2**64 - 1, 7], dtype=np.uint64), "item": [5, 6], "ts": [T0, T0]}
    )
    frame["event"] = "view"
    frame.to_parquet(tmp_path / "events.parquet")
    log = load_events(make_config(tmp_path, dict(CLICKS, path="events.parquet")))
    assert log.frame["user"].tolist() == [str(2**64 - 1), "7"]


def test_only_an_empty_field_is_missing_so_na_can_be_an_id(tmp_path: Path) -> None:
    _log(tmp_path, f"NA,10,{T0},view\nnull,11,{T0},view\n,12,{T0},view")
    log = load_events(make_config(tmp_path, CLICKS))
    assert log.frame["user"].tolist() == ["NA", "null"]
    assert log.report.rejected == {"missing_user": 1}


def test_a_log_with_its_own_reason_column_keeps_it_in_the_rejects_file(tmp_path: Path) -> None:
    write_csv(tmp_path / "events.csv", f"user,item,ts,event,reason\n,10,{T0},view,promo")
    events = dict(CLICKS, columns=dict(CLICKS["columns"], session="reason"))  # type: ignore[arg-type]
    with pytest.raises(EventsSchemaError, match="no row was accepted"):
        load_events(make_config(tmp_path, events))
    rejects = pd.read_csv(tmp_path / "rejects" / "events.rejects.csv", dtype=str)
    assert list(rejects.columns) == [
        "rejected_reason",
        "file",
        "row",
        "user",
        "item",
        "ts",
        "event",
        "reason",
    ]
    assert rejects[["rejected_reason", "reason"]].values.tolist() == [["missing_user", "promo"]]


def test_times_with_and_without_an_offset_are_each_read_as_written(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "events.csv",
        "user,item,ts,event\n1,10,2011-06-01 10:00,view\n1,11,2011-06-01 10:00+01:00,view",
    )
    events = dict(CLICKS, timestamp_unit="datetime")
    log = load_events(make_config(tmp_path, events, timezone="Europe/London"))
    # Both are 10:00 in London on a summer day: 09:00 UTC.
    assert log.frame["timestamp"].tolist() == [1_306_918_800, 1_306_918_800]
