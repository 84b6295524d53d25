"""The event log loaded on Spark: the same report, rows, rejects and errors as the local loader."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("pyspark", reason="the Spark loader needs pyspark: pip install '.[spark]'")

from recsys.config import Config
from recsys.errors import EventsSchemaError
from recsys.ingest import EventLog, load_events
from tests.conftest import make_config, write_csv
from training.spark.spark_ingest import SparkEventLog, load_events_spark, to_event_log

pytestmark = pytest.mark.spark
T0 = 1_700_000_000  # 2023-11-14, inside the window below
HEADER = "invoice,customer,sku,qty,price,when,kind,status"
ORDERS = {
    "path": "orders.csv",
    "timestamp_unit": "s",
    "columns": {
        "user": "customer",
        "item": "sku",
        "timestamp": "when",
        "event": "kind",
        "quantity": "qty",
        "price": "price",
        "session": "invoice",
    },
    "event_types": {"buy": "purchase", "look": "view"},
    "return_rules": [{"column": "invoice", "starts_with": "C"}],
    "exclude_items": ["POST"],
    "skip_rules": [{"column": "status", "equals": "test"}],
}
WINDOW = {"window_start": "2023-11-01", "window_end": "2023-12-01"}


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from pyspark.sql import SparkSession

    # Small splits put one file's rows in several partitions, so that row numbers and
    # duplicates are checked across partition boundaries.
    session = (
        SparkSession.builder.master("local[2]")
        .appName("recsys-test-ingest")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.files.maxPartitionBytes", "1500")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    yield session
    session.stop()


def _filler(count: int, start: int = 0) -> list[str]:
    """Clean purchase rows with whole-number ids, spread over a few users and items."""
    return [
        f"{536000 + i},{17000 + i % 7},{20000 + i % 11},{1 + i % 3},{1.25 * (1 + i % 4)},"
        f"{T0 + i},{'buy' if i % 2 else 'look'},ok"
        for i in range(start, start + count)
    ]


BAD_ROWS = [
    f"536900,,20001,1,2.5,{T0},buy,ok",  # missing_user
    f"536901,17001,,1,2.5,{T0},buy,ok",  # missing_item
    "536902,17001,20001,1,2.5,abc,buy,ok",  # bad_timestamp
    "536903,17001,20001,1,2.5,12,buy,ok",  # timestamp_out_of_range
    f"536904,17001,20001,1,2.5,{T0 + 40 * 86_400},buy,ok",  # out_of_window
    f"536905,17001,20001,1,2.5,{T0},click,ok",  # unknown_event
    f"536906,17001,POST,1,18,{T0},buy,ok",  # excluded_item
    f"536907,17001,20001,1,2.5,{T0},buy,test",  # skipped_by_rule
    f"536908,17001,20001,two,2.5,{T0},buy,ok",  # bad_quantity
    f"536909,17001,20001,-2,2.5,{T0},buy,ok",  # negative_quantity
    f"C536910,17001,20001,-2,2.5,{T0},buy,ok",  # a return: accepted
    f"C536911,17001,20001,x,2.5,{T0},buy,ok",  # bad_quantity, with a return rule
    f"536912,17001,20001,1,cheap,{T0},buy,ok",  # bad_price
    f"536913,17001,20001,1,-1.5,{T0},buy,ok",  # negative_price
    f"536914,17001,20001,1,,{T0},buy,ok",  # no price: accepted, price unknown
]


def _orders(tmp_path: Path, name: str = "orders.csv", tail: list[str] | None = None) -> Path:
    """A log whose first rows are clean and whose later partitions hold every kind of bad row."""
    rows = _filler(40) + BAD_ROWS + _filler(20, start=40)
    # Exact duplicates of rows in the first partition, far down the file.
    rows += [_filler(1)[0], _filler(1, start=3)[0]]
    # A text item id with letters, and one with leading zeros: the whole column is text.
    rows += [f"537000,17002,85123A,1,2.5,{T0},buy,ok", f"537001,17002,007,1,2.5,{T0},buy,ok"]
    return write_csv(tmp_path / name, "\n".join([HEADER, *rows, *(tail or [])]))


def _both(
    config: Config, spark: Any, tmp_path: Path, **kwargs: Any
) -> tuple[EventLog, SparkEventLog]:
    local = load_events(config, rejects_dir=tmp_path / "local-rejects", **kwargs)
    on_spark = load_events_spark(config, spark, rejects_dir=tmp_path / "spark-rejects", **kwargs)
    return local, on_spark


def _report(log: EventLog | SparkEventLog) -> dict[str, Any]:
    data = log.report.to_dict()
    for varying in ("seconds", "rejects_path"):
        data.pop(varying)
    return data


def _rows(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """Rows as plain Python values (missing as None), sorted, for comparing across engines."""
    plain = frame.astype(object).where(frame.notna(), None)
    return sorted(
        (tuple(r) for r in plain.itertuples(index=False)), key=lambda r: [str(v) for v in r]
    )


def _assert_same(local: EventLog, on_spark: SparkEventLog, tmp_path: Path) -> None:
    assert _report(on_spark) == _report(local)
    accepted = on_spark.frame.toPandas()
    assert list(accepted.columns) == list(local.frame.columns)
    assert _rows(accepted) == _rows(local.frame)
    for column in ("user", "item", "timestamp", "event"):
        assert (accepted[column].dtype.kind == "i") == (local.frame[column].dtype.kind == "i")
    # Collected for the job: the same rows in the same (file, row) order, with the same dtypes.
    collected = to_event_log(on_spark)
    pd.testing.assert_frame_equal(collected.frame, local.frame, check_exact=True)
    assert collected.report is on_spark.report
    assert collected.timezone == local.timezone
    if local.report.rejects_path:
        written = (tmp_path / "spark-rejects" / "events.rejects.csv").read_bytes()
        assert written == (tmp_path / "local-rejects" / "events.rejects.csv").read_bytes()
        expected = pd.read_csv(local.report.rejects_path, dtype=str, keep_default_na=False)
        rejects = on_spark.rejects.toPandas()
        rejects = rejects.astype(object).where(rejects.notna(), "").astype(str)
        assert _rows(rejects[list(expected.columns)]) == _rows(expected)


def test_every_kind_of_bad_row_gets_the_same_reason_row_and_report_on_spark(
    spark: Any, tmp_path: Path
) -> None:
    _orders(tmp_path)
    config = make_config(tmp_path, ORDERS, validation=WINDOW)
    local, on_spark = _both(config, spark, tmp_path)
    assert set(local.report.rejected) == {
        "missing_user",
        "missing_item",
        "bad_timestamp",
        "timestamp_out_of_range",
        "out_of_window",
        "unknown_event",
        "excluded_item",
        "skipped_by_rule",
        "bad_quantity",
        "negative_quantity",
        "bad_price",
        "negative_price",
        "duplicate",
    }
    assert local.report.returns == 1
    assert local.frame["item"].dtype.kind != "i"  # "85123A" and "007" make the column text
    assert "007" in set(local.frame["item"])
    _assert_same(local, on_spark, tmp_path)
    assert on_spark.frame.rdd.getNumPartitions() > 1


def test_whole_number_ids_stay_integers_on_spark(spark: Any, tmp_path: Path) -> None:
    write_csv(tmp_path / "orders.csv", "\n".join([HEADER, *_filler(60), *BAD_ROWS[:6]]))
    local, on_spark = _both(make_config(tmp_path, ORDERS), spark, tmp_path)
    assert local.frame["user"].dtype == np.int64
    assert dict(on_spark.frame.dtypes)["user"] == "bigint"
    _assert_same(local, on_spark, tmp_path)


def test_strict_policy_raises_the_same_message_on_spark(spark: Any, tmp_path: Path) -> None:
    _orders(tmp_path)
    config = make_config(tmp_path, ORDERS, validation=WINDOW)
    with pytest.raises(EventsSchemaError) as local:
        load_events(config, on_error="strict")
    with pytest.raises(EventsSchemaError) as on_spark:
        load_events_spark(config, spark, on_error="strict")
    assert str(on_spark.value) == str(local.value)
    assert str(local.value) == (
        "orders.csv: column 'customer' has 1 empty user ids (first at row 41: ''); fix them or "
        "set validation.on_error = 'quarantine' to set such rows aside"
    )


def test_strict_policy_names_the_value_of_a_typed_column_as_the_local_loader(
    spark: Any, tmp_path: Path
) -> None:
    write_csv(tmp_path / "orders.csv", "\n".join([HEADER, *_filler(50), BAD_ROWS[13], *_filler(5)]))
    config = make_config(tmp_path, ORDERS)
    with pytest.raises(EventsSchemaError) as local:
        load_events(config, on_error="strict")
    with pytest.raises(EventsSchemaError) as on_spark:
        load_events_spark(config, spark, on_error="strict")
    assert str(on_spark.value) == str(local.value)
    assert "(first at row 51: '-1.5')" in str(local.value)


def test_two_files_are_numbered_each_from_row_one_and_deduplicated_together(
    spark: Any, tmp_path: Path
) -> None:
    _orders(tmp_path, "a.csv")
    # Whole-number prices here, reals in a.csv: the columns meet as reals, as pd.concat does.
    write_csv(
        tmp_path / "b.csv",
        "\n".join([HEADER, _filler(1, start=5)[0], f"540000,17001,20001,2,3,{T0},buy,ok"]),
    )
    events = dict(ORDERS, path=["a.csv", "b.csv"])
    local, on_spark = _both(make_config(tmp_path, events, validation=WINDOW), spark, tmp_path)
    assert local.report.files == {"a.csv": 79, "b.csv": 2}
    _assert_same(local, on_spark, tmp_path)
    rejects = on_spark.rejects.toPandas()
    assert rejects.loc[rejects["file"] == "b.csv", ["reason", "row"]].values.tolist() == [
        ["duplicate", 1]
    ]


def test_parquet_log_gives_the_same_rows_and_report_on_spark(spark: Any, tmp_path: Path) -> None:
    n = 60
    frame = pd.DataFrame(
        {
            "user": pd.array([1000 + i % 9 for i in range(n)], dtype="Int64"),
            "item": [f"{i % 13:03d}" for i in range(n)],
            "ts": np.array([T0 + i for i in range(n)], dtype=np.int64),
            "event": ["view" if i % 3 else "purchase" for i in range(n)],
            "qty": [float(1 + i % 2) for i in range(n)],
        }
    )
    frame.loc[7, "user"] = pd.NA  # missing_user
    frame.loc[11, "ts"] = 5  # timestamp_out_of_range
    frame.loc[20, "qty"] = -1.0  # negative_quantity
    frame.loc[30, "event"] = "zoom"  # unknown_event
    frame.loc[55] = frame.loc[2]  # duplicate
    # Without pandas' own metadata, as Spark and most other writers leave it: pyarrow then
    # reads the user ids with a gap as floats, like Spark does.
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    pq.write_table(table, tmp_path / "events.parquet", row_group_size=8)
    events = {
        "path": "events.parquet",
        "columns": {"user": "user", "item": "item", "timestamp": "ts", "event": "event"},
        "timestamp_unit": "s",
    }
    events["columns"]["quantity"] = "qty"  # type: ignore[index]
    local, on_spark = _both(make_config(tmp_path, events), spark, tmp_path)
    assert local.report.rejected == {
        "missing_user": 1,
        "timestamp_out_of_range": 1,
        "unknown_event": 1,
        "negative_quantity": 1,
        "duplicate": 1,
    }
    _assert_same(local, on_spark, tmp_path)
