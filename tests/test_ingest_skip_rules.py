"""A shop keeps only some rows as interest: rows matching a skip rule are set aside and counted."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recsys.config import ReturnRule, RowRule, load_config
from recsys.errors import ConfigError, SchemaError
from recsys.ingest import load_events
from recsys.schema import REASON_BY_CODE, REASON_CODES
from tests.conftest import CLICKS, ROOT, make_config, shared_file, write_csv

T0 = 1_700_000_000  # 2023-11-14, a plausible time

RATINGS = {
    "path": "ratings.csv",
    "default_event": "purchase",
    "columns": {"user": "userId", "item": "movieId", "timestamp": "timestamp"},
    "skip_rules": [{"column": "rating", "less_than": 4}],
}


def _ratings(tmp_path: Path, rows: str) -> Path:
    return write_csv(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n" + rows)


def test_ratings_below_the_threshold_are_set_aside_and_counted(tmp_path: Path) -> None:
    _ratings(
        tmp_path,
        f"1,10,4.0,{T0}\n1,11,3.5,{T0 + 1}\n2,10,5,{T0 + 2}\n2,12,0.5,{T0 + 3}\n3,13,4.5,{T0 + 4}",
    )
    log = load_events(make_config(tmp_path, RATINGS))
    report = log.report
    assert report.rows_read == 5
    assert report.accepted + report.rejected_total == report.rows_read
    assert (report.accepted, report.rejected) == (3, {"skipped_by_rule": 2})
    assert log.frame[["user", "item"]].values.tolist() == [[1, 10], [2, 10], [3, 13]]
    assert report.by_event["purchase"] == 3
    assert "skipped_by_rule                  2" in report.format()


def test_strict_policy_does_not_raise_for_skipped_rows(tmp_path: Path) -> None:
    _ratings(tmp_path, f"1,10,4.0,{T0}\n1,11,3.0,{T0 + 1}")
    log = load_events(make_config(tmp_path, RATINGS), on_error="strict")
    assert (log.report.accepted, log.report.rejected) == (1, {"skipped_by_rule": 1})
    assert REASON_BY_CODE["skipped_by_rule"].fatal is False


def test_quarantine_writes_skipped_rows_to_the_rejects_file_with_their_reason(
    tmp_path: Path,
) -> None:
    _ratings(tmp_path, f"1,10,4.0,{T0}\n7,11,2.5,{T0 + 1}")
    log = load_events(make_config(tmp_path, RATINGS))
    assert log.report.rejects_path == str(tmp_path / "rejects" / "events.rejects.csv")
    rejects = pd.read_csv(tmp_path / "rejects" / "events.rejects.csv", dtype=str)
    assert rejects.to_dict("records") == [
        {
            "reason": "skipped_by_rule",
            "file": "ratings.csv",
            "row": "2",
            "userId": "7",
            "movieId": "11",
            "rating": "2.5",
            "timestamp": str(T0 + 1),
        }
    ]


def test_a_row_without_a_user_is_rejected_as_missing_user_before_the_skip_rule(
    tmp_path: Path,
) -> None:
    _ratings(tmp_path, f"1,10,4.0,{T0}\n,11,1.0,{T0 + 1}\n2,12,1.0,{T0 + 2}")
    log = load_events(make_config(tmp_path, RATINGS))
    assert log.report.rejected == {"missing_user": 1, "skipped_by_rule": 1}
    assert REASON_CODES.index("skipped_by_rule") == REASON_CODES.index("excluded_item") + 1


def test_ratings_that_are_not_numbers_match_no_numeric_rule_like_return_rules(
    tmp_path: Path,
) -> None:
    _ratings(tmp_path, f"1,10,4.0,{T0}\n1,11,n/a,{T0 + 1}\n1,12,,{T0 + 2}\n1,13,1,{T0 + 3}")
    log = load_events(make_config(tmp_path, RATINGS))
    assert log.frame["item"].tolist() == [10, 11, 12]
    assert log.report.rejected == {"skipped_by_rule": 1}


def test_equals_and_starts_with_rules_skip_test_orders_and_internal_accounts(
    tmp_path: Path,
) -> None:
    write_csv(
        tmp_path / "events.csv",
        "user,item,ts,event,channel\n"
        f"1,10,{T0},view,web\n"
        f"2,10,{T0 + 1},view,test\n"
        f"STAFF-7,11,{T0 + 2},purchase,web\n"
        f"3,11,{T0 + 3},purchase,testing\n"
        f"4,12,{T0 + 4},cart,",
    )
    rules = [{"column": "channel", "equals": "test"}, {"column": "user", "starts_with": "STAFF-"}]
    log = load_events(make_config(tmp_path, dict(CLICKS, skip_rules=rules)))
    # 'testing' is not equal to 'test', and an empty channel matches neither rule.
    assert log.frame["user"].tolist() == ["1", "3", "4"]
    assert log.report.rejected == {"skipped_by_rule": 2}


def test_skip_rules_work_on_parquet_logs_with_numeric_columns(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "userId": [1, 1, 2, 2],
            "movieId": [10, 11, 10, 12],
            "rating": [4.0, 3.5, 5.0, 4.0],
            "timestamp": [T0, T0 + 1, T0 + 2, T0 + 3],
        }
    )
    frame.to_parquet(tmp_path / "ratings.parquet")
    log = load_events(make_config(tmp_path, dict(RATINGS, path="ratings.parquet")))
    assert log.report.rows_read == 4
    assert (log.report.accepted, log.report.rejected) == (3, {"skipped_by_rule": 1})


def test_a_skip_rule_on_a_missing_column_is_a_clear_error_naming_file_and_column(
    tmp_path: Path,
) -> None:
    _ratings(tmp_path, f"1,10,4.0,{T0}")
    events = dict(RATINGS, skip_rules=[{"column": "stars", "less_than": 4}])
    with pytest.raises(SchemaError) as err:
        load_events(make_config(tmp_path, events))
    assert str(err.value) == (
        "ratings.csv: missing column 'stars' named by events.skip_rules; "
        "set the rule's column to one of the file's column names or drop the rule"
    )


def test_a_skip_rule_setting_two_tests_is_refused_naming_the_rule(tmp_path: Path) -> None:
    rules = [
        {"column": "rating", "less_than": 4},
        {"column": "rating", "less_than": 2, "equals": "x"},
    ]
    with pytest.raises(ConfigError) as err:
        make_config(tmp_path, dict(RATINGS, skip_rules=rules))
    assert str(err.value) == (
        "events.skip_rules[1]: skip rule on column 'rating' must set exactly one of "
        "starts_with, less_than, equals (got 2)"
    )


def test_a_skip_rule_setting_no_test_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"skip rule on column 'rating' .* \(got 0\)"):
        make_config(tmp_path, dict(RATINGS, skip_rules=[{"column": "rating"}]))


def test_return_rules_and_skip_rules_share_one_rule_shape() -> None:
    assert ReturnRule is RowRule
    assert RowRule(column="rating", less_than=4.0).less_than == 4.0


def test_movielens_ratings_of_4_or_more_are_kept_and_the_rest_skipped(tmp_path: Path) -> None:
    shared_file("ml-latest-small/ratings.parquet")
    config = load_config(ROOT / "data" / "configs" / "movielens.toml")
    report = load_events(config, rejects_dir=tmp_path).report
    assert report.rows_read == 100_836
    assert report.accepted + report.rejected_total == report.rows_read
    assert (report.accepted, report.rejected) == (48_580, {"skipped_by_rule": 52_256})
    assert report.by_event["purchase"] == 48_580
    assert report.users == 609  # one of the 610 users rated nothing 4 or more
