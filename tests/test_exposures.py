"""The exposure log: every list shown is recorded without ever slowing or breaking recommend()."""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from recsys.errors import InputFileError
from serving import exposures
from serving.exposures import (
    Exposure,
    JsonlExposureLog,
    MemoryExposureLog,
    SinkStats,
    read_exposures,
)

T = 1_700_000_000


def shown(i: int, **changes: object) -> Exposure:
    """The i-th list shown to user u<i> (all such lines have the same length for i in 10..99)."""
    fields: dict[str, object] = {
        "time": T + i,
        "experiment": "blend-v2",
        "variant": "B" if i % 2 else "A",
        "user_id": f"u{i}",
        "visitor_id": None,
        "model_version": "v7",
        "items": (i, i + 1),
        "sources": ("personal", "popular"),
    }
    fields.update(changes)
    return Exposure(**fields)  # type: ignore[arg-type]


def eventually(check: Callable[[], bool], seconds: float = 3.0) -> None:
    """Wait until the writer thread has done what `check` looks for."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "the writer did not get there in time"
        time.sleep(0.005)


def times(path: Path | str | list[Path]) -> list[int]:
    return read_exposures(path)["time"].tolist()


def blocked_writes(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make every write wait for `release` (a hung disk); `entered` is set once one waits."""
    entered, release = threading.Event(), threading.Event()
    real = exposures._write_all

    def write_when_released(fd: int, data: bytes) -> None:
        entered.set()
        release.wait(5)
        real(fd, data)

    monkeypatch.setattr(exposures, "_write_all", write_when_released)
    return entered, release


def test_an_exposure_is_one_json_line_with_ranks_and_numpy_ids_as_plain_numbers() -> None:
    exposure = Exposure(
        time=np.int64(T),  # type: ignore[arg-type]
        experiment="blend-v2",
        variant="B",
        user_id=np.int64(42),
        visitor_id=None,
        model_version="v7",
        items=(np.int32(3), "sku-9", np.float64(2.5)),
        sources=("personal", "session", "popular"),
    )
    assert exposure.to_json() == (
        '{"time":1700000000,"experiment":"blend-v2","variant":"B","user_id":42,'
        '"visitor_id":null,"model_version":"v7","items":[3,"sku-9",2.5],"ranks":[1,2,3],'
        '"sources":["personal","session","popular"]}'
    )


def test_shown_lists_are_written_as_json_lines_and_read_back_with_the_same_values(
    tmp_path: Path,
) -> None:
    path = tmp_path / "logs" / "exposures.jsonl"  # the folder does not exist yet
    known = shown(10, user_id=np.int64(7), items=(np.int64(101), np.int64(102)))
    anonymous = shown(11, user_id=None, visitor_id="sess-1", items=("sku-a", "sku-b"))
    unassigned = shown(12, experiment=None, variant=None, items=(5,), sources=("trending",))
    with JsonlExposureLog(path, flush_seconds=0.01) as sink:
        for exposure in (known, anonymous, unassigned):
            sink.record(exposure)
    assert sink.stats() == SinkStats(recorded=3, written=3, dropped=0, failed=0, last_error=None)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines == [known.to_json(), anonymous.to_json(), unassigned.to_json()]

    frame = read_exposures(path)
    assert list(frame.columns) == list(exposures.COLUMNS)
    assert frame.to_dict("records") == [
        {
            "time": T + 10,
            "experiment": "blend-v2",
            "variant": "A",
            "user_id": 7,
            "visitor_id": None,
            "model_version": "v7",
            "items": [101, 102],
            "ranks": [1, 2],
            "sources": ["personal", "popular"],
        },
        {
            "time": T + 11,
            "experiment": "blend-v2",
            "variant": "B",
            "user_id": None,
            "visitor_id": "sess-1",
            "model_version": "v7",
            "items": ["sku-a", "sku-b"],
            "ranks": [1, 2],
            "sources": ["personal", "popular"],
        },
        {
            "time": T + 12,
            "experiment": None,
            "variant": None,
            "user_id": "u12",
            "visitor_id": None,
            "model_version": "v7",
            "items": [5],
            "ranks": [1],
            "sources": ["trending"],
        },
    ]
    assert type(frame["user_id"][0]) is int and frame["time"].dtype == np.int64


def test_the_log_rotates_by_size_and_a_directory_or_glob_reads_every_record_in_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "exposures.jsonl"
    line_bytes = len(shown(10).to_json()) + 1
    with JsonlExposureLog(path, max_bytes=2 * line_bytes, backups=10) as sink:
        for i in range(10, 20):
            sink.record(shown(i))

    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"exposures.jsonl{s}" for s in ("", ".1", ".2", ".3", ".4")]
    assert all(p.stat().st_size <= 2 * line_bytes for p in tmp_path.iterdir())
    assert times(tmp_path / "exposures.jsonl.4") == [T + 10, T + 11]  # .4 is the oldest
    assert times(tmp_path) == [T + i for i in range(10, 20)]
    assert times(str(tmp_path / "exposures.jsonl*")) == [T + i for i in range(10, 20)]
    assert times(path) == [T + 18, T + 19]  # a plain file is only that file


def test_rotation_deletes_files_beyond_backups_by_design_and_their_records_count_as_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "exposures.jsonl"
    line_bytes = len(shown(10).to_json()) + 1
    with JsonlExposureLog(path, max_bytes=2 * line_bytes, backups=2) as sink:
        for i in range(10, 20):
            sink.record(shown(i))

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "exposures.jsonl",
        "exposures.jsonl.1",
        "exposures.jsonl.2",
    ]
    assert times(tmp_path) == [T + i for i in range(14, 20)]
    assert sink.stats() == SinkStats(recorded=10, written=10, dropped=0, failed=0, last_error=None)


def test_a_restarted_process_appends_and_rotates_what_is_already_there(tmp_path: Path) -> None:
    path = tmp_path / "exposures.jsonl"
    line_bytes = len(shown(10).to_json()) + 1
    for first in (10, 11):
        with JsonlExposureLog(path, max_bytes=2 * line_bytes) as sink:
            sink.record(shown(first))
    with JsonlExposureLog(path, max_bytes=2 * line_bytes) as sink:
        sink.record(shown(12))
    assert times(path.with_name("exposures.jsonl.1")) == [T + 10, T + 11]
    assert times(tmp_path) == [T + 10, T + 11, T + 12]


def test_a_blocked_disk_never_slows_record_and_overflow_is_counted_then_the_queue_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="serving.exposures")
    entered, release = blocked_writes(monkeypatch)
    path = tmp_path / "exposures.jsonl"
    sink = JsonlExposureLog(path, queue_size=1_000, flush_seconds=0.01)
    sink.record(shown(10))
    assert entered.wait(3)  # the writer now hangs on the disk with that one exposure

    many = [shown(10 + i % 90) for i in range(10_000)]
    start = time.perf_counter()
    for exposure in many:
        sink.record(exposure)
    elapsed = time.perf_counter() - start

    assert elapsed < 1.0, f"10k record() calls took {elapsed:.3f}s"
    assert sink.stats() == SinkStats(
        recorded=1_001, written=0, dropped=9_000, failed=0, last_error=None
    )
    release.set()
    final = sink.close()
    assert final == SinkStats(
        recorded=1_001, written=1_001, dropped=9_000, failed=0, last_error=None
    )
    assert len(read_exposures(path)) == 1_001
    assert [r.getMessage() for r in caplog.records] == [
        f"exposure log {path}: queue full (1000); dropping exposures (see stats())",
        f"exposure log {path} closed: 1001 recorded, 1001 written, 9000 dropped, 0 failed "
        "(last error: None)",
    ]


def test_the_first_dropped_exposure_is_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    entered, release = blocked_writes(monkeypatch)
    path = tmp_path / "exposures.jsonl"
    sink = JsonlExposureLog(path, queue_size=1, flush_seconds=0.01)
    sink.record(shown(10))
    assert entered.wait(3)
    with caplog.at_level(logging.WARNING, logger="serving.exposures"):
        for i in range(11, 15):
            sink.record(shown(i))
    assert [r.getMessage() for r in caplog.records] == [
        f"exposure log {path}: queue full (1); dropping exposures (see stats())"
    ]
    release.set()
    assert sink.close() == SinkStats(recorded=2, written=2, dropped=3, failed=0, last_error=None)


def test_close_gives_up_after_its_timeout_and_counts_what_is_queued_or_held_as_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = blocked_writes(monkeypatch)
    sink = JsonlExposureLog(tmp_path / "exposures.jsonl", flush_seconds=0.01)
    sink.record(shown(10))
    assert entered.wait(3)
    for i in range(11, 16):
        sink.record(shown(i))

    start = time.perf_counter()
    # Every exposure is accounted for when close() returns: the one the writer holds too (a
    # daemon writer dies with the process), as dropped.
    assert sink.close(timeout=0.05) == SinkStats(
        recorded=6, written=0, dropped=6, failed=0, last_error=None
    )
    assert time.perf_counter() - start < 1.0
    release.set()  # ... and if the process lives on, its write moves it to written
    eventually(lambda: sink.stats().written == 1)
    assert sink.stats() == SinkStats(recorded=6, written=1, dropped=5, failed=0, last_error=None)


def test_a_full_disk_counts_failed_lines_with_the_reason_and_writing_resumes_when_space_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_space(path: Path) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    path = tmp_path / "exposures.jsonl"
    monkeypatch.setattr(exposures, "_open_append", no_space)
    sink = JsonlExposureLog(path, flush_seconds=0.01)
    with caplog.at_level(logging.WARNING, logger="serving.exposures"):
        for i in range(10, 15):
            sink.record(shown(i))  # never raises
        eventually(lambda: sink.stats().failed == 5 and bool(caplog.records))
    reason = "OSError: [Errno 28] No space left on device"
    assert sink.stats() == SinkStats(recorded=5, written=0, dropped=0, failed=5, last_error=reason)
    assert [r.getMessage() for r in caplog.records] == [
        f"exposure log {path}: cannot write ({reason}); counting those exposures as failed "
        "and retrying on the next batch"
    ]

    monkeypatch.undo()  # space is back
    for i in range(15, 18):
        sink.record(shown(i))
    assert sink.close() == SinkStats(recorded=8, written=3, dropped=0, failed=5, last_error=reason)
    assert times(path) == [T + 15, T + 16, T + 17]


def test_a_write_cut_off_by_a_full_disk_leaves_no_half_line_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = exposures._write_all

    def half_then_full(fd: int, data: bytes) -> None:
        real(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    path = tmp_path / "exposures.jsonl"
    with JsonlExposureLog(path, flush_seconds=0.01) as sink:
        sink.record(shown(10))
        eventually(lambda: sink.stats().written == 1)
        monkeypatch.setattr(exposures, "_write_all", half_then_full)
        sink.record(shown(11))
        eventually(lambda: sink.stats().failed == 1)
        monkeypatch.undo()
        sink.record(shown(12))
    assert times(path) == [T + 10, T + 12]


def test_a_log_folder_that_cannot_be_created_fails_until_it_can(tmp_path: Path) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("not a folder")
    sink = JsonlExposureLog(blocker / "exposures.jsonl", flush_seconds=0.01)
    sink.record(shown(10))
    eventually(lambda: sink.stats().failed == 1)
    assert sink.stats().last_error == f"FileExistsError: [Errno 17] File exists: '{blocker}'"

    blocker.unlink()
    sink.record(shown(11))
    eventually(lambda: sink.stats().written == 1)
    assert sink.close() == SinkStats(
        recorded=2, written=1, dropped=0, failed=1, last_error=sink.stats().last_error
    )
    assert times(blocker / "exposures.jsonl") == [T + 11]


def test_an_exposure_that_cannot_be_encoded_fails_alone_without_reaching_the_caller(
    tmp_path: Path,
) -> None:
    path = tmp_path / "exposures.jsonl"
    with JsonlExposureLog(path) as sink:
        sink.record(shown(10))
        sink.record(shown(11, user_id=object()))
        sink.record(shown(12, sources=("personal",)))
        sink.record(shown(13))
    stats = sink.stats()
    assert (stats.recorded, stats.written, stats.failed) == (4, 2, 2)
    assert stats.last_error == "cannot encode exposure: exposure has 2 items but 1 sources"
    assert times(path) == [T + 10, T + 13]


def test_close_drains_the_queue_reports_is_idempotent_and_later_records_are_dropped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "exposures.jsonl"
    sink = JsonlExposureLog(path)  # flush_seconds=1: only close() gets them written in time
    for i in range(10, 40):
        sink.record(shown(i))
    done = SinkStats(recorded=30, written=30, dropped=0, failed=0, last_error=None)
    assert sink.close() == done
    assert sink.close() == done
    sink.record(shown(40))
    assert sink.stats() == SinkStats(recorded=30, written=30, dropped=1, failed=0, last_error=None)
    assert not sink._thread.is_alive()
    assert times(path) == [T + i for i in range(10, 40)]


def test_a_cut_off_last_line_from_a_crash_does_not_swallow_the_next_record(
    tmp_path: Path,
) -> None:
    path = tmp_path / "exposures.jsonl"
    path.write_text(shown(10).to_json() + "\n" + '{"time":17', encoding="utf-8")
    with JsonlExposureLog(path) as sink:
        sink.record(shown(11))
    assert path.read_text(encoding="utf-8").splitlines()[1:] == ['{"time":17', shown(11).to_json()]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json\n", "line 2: not a JSON exposure record (Expecting value at column 1)"),
        (
            '{"time":17',
            "line 2: not a JSON exposure record (Expecting ',' delimiter at column 11) "
            "(the file ends mid-line: a cut-off write?)",
        ),
        (
            '{"time": 1}\n',
            "line 2: not an exposure record (missing experiment, variant, user_id, visitor_id, "
            "model_version, items, ranks, sources)",
        ),
        ("[1, 2]\n", "line 2: expected a JSON object, got list"),
    ],
)
def test_a_malformed_line_is_an_error_naming_its_file_and_line(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "exposures.jsonl"
    path.write_text(shown(10).to_json() + "\n" + text, encoding="utf-8")
    with pytest.raises(InputFileError) as error:
        read_exposures(tmp_path)
    assert str(error.value) == f"{path}, {problem}"


def test_a_missing_log_or_a_glob_matching_nothing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError) as error:
        read_exposures(tmp_path / "nope.jsonl")
    assert str(error.value) == f"{tmp_path / 'nope.jsonl'}: exposure log not found"
    with pytest.raises(InputFileError) as error:
        read_exposures(str(tmp_path / "nope*.jsonl"))
    pattern = tmp_path / "nope*.jsonl"
    assert str(error.value) == f"{pattern}: no exposure log file matches this pattern"
    assert read_exposures(tmp_path).empty  # a log folder before the first exposure


def test_the_memory_log_keeps_exposures_for_notebooks_and_counts_what_it_cannot_keep() -> None:
    with MemoryExposureLog(max_records=2) as sink:
        for i in range(10, 13):
            sink.record(shown(i))
    sink.record(shown(13))
    assert sink.exposures == [shown(10), shown(11)]
    assert sink.stats() == SinkStats(recorded=2, written=2, dropped=2, failed=0, last_error=None)
    assert sink.to_frame()["time"].tolist() == [T + 10, T + 11]
    assert sink.to_frame()["ranks"].tolist() == [[1, 2], [1, 2]]


def test_every_record_is_written_or_counted_when_a_slow_disk_makes_close_give_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = exposures.JsonlExposureLog._write_lines

    def crawl(self: exposures.JsonlExposureLog, lines: list[bytes]) -> int:
        time.sleep(0.02)
        return slow(self, lines)

    monkeypatch.setattr(exposures.JsonlExposureLog, "_write_lines", crawl)
    sink = JsonlExposureLog(tmp_path / "exposures.jsonl", queue_size=50_000, flush_seconds=0.001)
    for i in range(20_000):
        sink.record(shown(i))
    closed = sink.close(timeout=0.01)
    assert closed.recorded == 20_000
    assert closed.written + closed.dropped + closed.failed == 20_000
    path = tmp_path / "exposures.jsonl"

    def settled() -> bool:
        # a batch still being written may finish: it moves to written, it is not lost
        later = sink.stats()
        lines = path.read_bytes().count(b"\n") if path.exists() else 0
        return later.written + later.dropped + later.failed == 20_000 and lines == later.written

    eventually(settled)
