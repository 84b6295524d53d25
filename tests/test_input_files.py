"""Files that cannot be read at all get one clear error naming the file, never a deep traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.errors import EventsSchemaError, InputFileError, SchemaError
from recsys.ingest import load_events
from tests.conftest import CLICKS, make_config, write_csv


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"events\.csv: events file not found"):
        load_events(make_config(tmp_path, CLICKS))


def test_empty_file_is_reported_as_empty(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_bytes(b"")
    with pytest.raises(InputFileError, match=r"events\.csv: events file is empty \(0 bytes\)"):
        load_events(make_config(tmp_path, CLICKS))


def test_header_only_log_has_nothing_to_train_on(tmp_path: Path) -> None:
    write_csv(tmp_path / "events.csv", "user,item,ts,event")
    with pytest.raises(EventsSchemaError) as err:
        load_events(make_config(tmp_path, CLICKS))
    assert str(err.value) == "events.csv: the event log has no data rows; nothing to train on"


def test_missing_required_column_names_the_columns_the_file_has(tmp_path: Path) -> None:
    write_csv(tmp_path / "events.csv", "visitor,item,ts,event\n1,2,3,view")
    with pytest.raises(SchemaError) as err:
        load_events(make_config(tmp_path, CLICKS))
    assert str(err.value) == (
        "events.csv: missing required column 'user' "
        "(columns found: ['visitor', 'item', 'ts', 'event']); "
        "set events.columns to the file's column names"
    )


def test_a_file_that_is_neither_csv_nor_parquet_is_refused(tmp_path: Path) -> None:
    (tmp_path / "events.parquet").write_bytes(b"PK\x03\x04 this is a zip archive \x00\x01")
    with pytest.raises(
        InputFileError, match=r"events\.parquet: events file is not a readable Parquet"
    ):
        load_events(make_config(tmp_path, dict(CLICKS, path="events.parquet")))


def test_binary_file_named_csv_is_refused(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputFileError, match=r"events\.csv: events file is not"):
        load_events(make_config(tmp_path, CLICKS))


def test_broken_gzip_is_refused(tmp_path: Path) -> None:
    (tmp_path / "events.csv.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(InputFileError, match=r"events\.csv\.gz: events file is not"):
        load_events(make_config(tmp_path, dict(CLICKS, path="events.csv.gz")))


def test_wrong_encoding_says_how_to_fix_it(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_bytes(
        "user,item,ts,event\nJosé,Crème brûlée,1700000000,view\n".encode("latin-1")
    )
    with pytest.raises(InputFileError) as err:
        load_events(make_config(tmp_path, CLICKS))
    assert "events.csv: events file is not valid utf-8 text; set the source's encoding" in str(
        err.value
    )


def test_declared_encoding_reads_latin1_files(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_bytes(
        "user,item,ts,event\nJosé,Crème brûlée,1700000000,view\n".encode("latin-1")
    )
    log = load_events(make_config(tmp_path, dict(CLICKS, encoding="latin-1")))
    assert log.frame["item"].tolist() == ["Crème brûlée"]
