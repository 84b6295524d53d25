"""The exposure log of online A/B experiments: which list each visitor was shown, and when.

`recommend()` hands an `Exposure` to a sink; the sink must never slow it down or raise into
it. `JsonlExposureLog` only puts the exposure on a bounded queue; a daemon thread encodes
and writes JSON lines in batches and rotates the file by size (path -> path.1 -> ... ->
path.<backups>, the oldest deleted, as `logging.handlers.RotatingFileHandler` does). A full
queue or a failing disk costs records, never calls: they are counted in `stats()` as
dropped or failed, logged once when it starts and summed up on `close()`.

Once the log is closed (and its writer done), every record() call has ended as exactly one
of written, failed or dropped. Rotation deletes the oldest file by design: its records count
as written. One log file belongs to one process: give each worker process its own path, and
create the log after the fork (the writer thread does not survive one).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import json
import logging
import os
import queue
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import numpy as np
import pandas as pd

from recsys.errors import InputFileError

log = logging.getLogger(__name__)

COLUMNS = (
    "time",
    "experiment",
    "variant",
    "user_id",
    "visitor_id",
    "model_version",
    "items",
    "ranks",
    "sources",
)
# Bounds the memory and the time of one write; a longer queue is written in several batches.
_MAX_BATCH = 10_000
_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0)


@dataclass(frozen=True, slots=True)
class Exposure:
    """One list shown to one visitor."""

    time: int  # Unix seconds (the serving clock of the call)
    experiment: str | None
    variant: str | None
    user_id: Any  # the shop's user id, or None (anonymous)
    visitor_id: Any  # visitor/session id for anonymous visitors, or None
    model_version: str
    items: tuple[Any, ...]  # item ids in rank order (rank = position + 1)
    sources: tuple[str, ...]

    def to_json(self) -> str:
        """One JSON line (no newline) with the ranks 1..n; numpy numbers become plain ones."""
        n = len(self.items)
        if len(self.sources) != n:
            raise ValueError(f"exposure has {n} items but {len(self.sources)} sources")
        if isinstance(self.time, bool) or not isinstance(self.time, int | np.integer):
            raise TypeError(f"exposure time must be whole Unix seconds (got {self.time!r})")
        record = {
            "time": int(self.time),
            "experiment": self.experiment,
            "variant": self.variant,
            "user_id": self.user_id,
            "visitor_id": self.visitor_id,
            "model_version": self.model_version,
            "items": list(self.items),
            "ranks": list(range(1, n + 1)),
            "sources": list(self.sources),
        }
        # allow_nan=False: NaN is not JSON, and downstream readers would choke on it.
        return json.dumps(
            record, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_plain
        )


def _plain(value: Any) -> Any:
    """The built-in number for a numpy scalar; anything else is not an id JSON can hold."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"{type(value).__name__} {value!r} cannot be written; ids must be int or str")


class ExposureSink(Protocol):
    """Where exposures go; implementations must never block or raise in record()."""

    def record(self, exposure: Exposure) -> None: ...

    # object, not None: the sinks here return their SinkStats, which callers may ignore.
    def close(self) -> object: ...


@dataclass
class SinkStats:
    """What a sink did with the exposures it was given."""

    recorded: int  # accepted into the queue
    written: int
    dropped: int  # no room (queue full), recorded after close, or still queued at close
    failed: int  # write errors (disk full, permission, ...) and exposures that cannot be encoded
    last_error: str | None


class _Counts:
    """Counters shared by the callers' threads and the writer; warns once about losses."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.recorded = self.written = self.dropped = self.failed = 0
        self.last_error: str | None = None
        self.warned_drop = self.warned_fail = False
        # the batch the writer holds, and whether close() gave up on it (counted as dropped
        # then; moved to written or failed if the writer still finishes it).
        self.in_flight = 0
        self.abandoned = False

    def stats(self) -> SinkStats:
        """A snapshot of the counts."""
        with self.lock:
            return SinkStats(
                self.recorded, self.written, self.dropped, self.failed, self.last_error
            )

    def drop(self, n: int, why: str) -> None:
        """Count n dropped exposures; the first time, say so in the log."""
        with self.lock:
            self.dropped += n
            first, self.warned_drop = not self.warned_drop, True
        if first:
            log.warning("exposure log %s: %s; dropping exposures (see stats())", self.name, why)

    def done(self, written: int, failed: int, error: str | None) -> None:
        """Count a batch's written and failed exposures; warn at the first failure."""
        with self.lock:
            self.in_flight = 0
            if self.abandoned:
                # close() counted this batch as dropped; the process outlived it after all.
                self.dropped -= written + failed
            self.written += written
            self.failed += failed
            if error is not None:
                self.last_error = error
            first = failed > 0 and not self.warned_fail
            self.warned_fail = self.warned_fail or first
        if first:
            log.warning(
                "exposure log %s: cannot write (%s); counting those exposures as failed "
                "and retrying on the next batch",
                self.name,
                error,
            )

    def summary(self) -> None:
        """Log what was lost, if anything, when the sink closes."""
        s = self.stats()
        if s.dropped or s.failed:
            log.warning(
                "exposure log %s closed: %d recorded, %d written, %d dropped, %d failed "
                "(last error: %s)",
                self.name,
                s.recorded,
                s.written,
                s.dropped,
                s.failed,
                s.last_error,
            )


class _Closing:
    """`with sink:` closes the sink at the end of the block."""

    def close(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class JsonlExposureLog(_Closing):
    """An ExposureSink writing JSON lines to `path` from a background thread, rotated by size.

    `max_bytes=0` or `backups=0` never rotates (as in RotatingFileHandler). Exposures reach
    the file at most about `flush_seconds` after record(). Close it (or use `with`) to write
    what is queued; at interpreter exit an unclosed log is closed too.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 100 * 2**20,
        backups: int = 10,
        queue_size: int = 100_000,
        flush_seconds: float = 1.0,
    ) -> None:
        for name, value, least in (("max_bytes", max_bytes, 0), ("backups", backups, 0)):
            if value < least:
                raise ValueError(f"{name} must be >= {least} (got {value})")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1 (got {queue_size})")
        if not flush_seconds > 0:
            raise ValueError(f"flush_seconds must be > 0 (got {flush_seconds})")
        self.path = Path(path)
        self.max_bytes, self.backups = max_bytes, backups
        self.queue_size, self.flush_seconds = queue_size, flush_seconds
        self._counts = _Counts(str(self.path))
        self._queue: queue.Queue[Exposure] = queue.Queue(maxsize=queue_size)
        self._closed = False
        self._stop = threading.Event()
        # Held by the writer from taking a batch off the queue until it is counted in flight,
        # and by close() while it sees what is in flight and drains the rest: no batch is
        # ever between the two, uncounted (record() never waits on it).
        self._taking = threading.Lock()
        # Owned by the writer thread.
        self._fd: int | None = None
        self._size = 0
        self._disk_failing = False
        self._thread = threading.Thread(
            target=self._run, name=f"exposure-writer {self.path.name}", daemon=True
        )
        self._thread.start()
        atexit.register(self._close_at_exit)

    def record(self, exposure: Exposure) -> None:
        """Queue one exposure; never blocks or raises (no room or closed: counted as dropped)."""
        counts = self._counts
        with counts.lock:
            if not self._closed:
                try:
                    self._queue.put_nowait(exposure)
                except queue.Full:
                    pass
                else:
                    counts.recorded += 1
                    return
            closed = self._closed
        counts.drop(1, "recorded after close()" if closed else f"queue full ({self.queue_size})")

    def stats(self) -> SinkStats:
        """A snapshot of what happened to the exposures so far."""
        return self._counts.stats()

    def close(self, timeout: float = 5.0) -> SinkStats:
        """Write what is queued within `timeout` seconds, stop the writer and report; idempotent.

        Exposures still queued after the timeout count as dropped; a batch the writer is in the
        middle of is counted (written or failed) when it finishes.
        """
        with self._counts.lock:
            again, self._closed = self._closed, True
        if again:
            return self.stats()
        atexit.unregister(self._close_at_exit)
        self._stop.set()
        self._thread.join(timeout)
        counts = self._counts
        with self._taking:
            with counts.lock:
                # A batch the writer still holds would die with the process (a daemon thread):
                # counted as dropped now, and the writer leaves it alone.
                held = counts.in_flight if self._thread.is_alive() else 0
                counts.abandoned = self._thread.is_alive()
            left = len(self._take(self.queue_size)) + held
        if left:
            counts.drop(left, f"still queued or being written when close() timed out after "
                        f"{timeout}s")  # fmt: skip
        if self._thread.is_alive():
            log.warning(
                "exposure log %s: the writer did not finish within %ss (slow disk?)",
                self.path,
                timeout,
            )
        self._counts.summary()
        return self.stats()

    def _close_at_exit(self) -> None:
        self.close()

    # The writer thread: everything below runs there, never in a caller's thread.

    def _run(self) -> None:
        """Every flush_seconds (or at once when closing), write everything queued."""
        while True:
            stopping = self._stop.wait(self.flush_seconds)
            while True:
                with self._taking:
                    with self._counts.lock:
                        if self._counts.abandoned:
                            # close() gave up and counted what was queued: nothing is ours.
                            break
                    batch = self._take(_MAX_BATCH)
                    if not batch:
                        break
                    with self._counts.lock:
                        self._counts.in_flight = len(batch)
                try:
                    self._write_batch(batch)
                except Exception as exc:  # a bug must not end the thread and stop the log
                    self._discard_file()
                    self._counts.done(0, len(batch), f"unexpected {exc!r}")
            if stopping:
                break
        self._discard_file()

    def _take(self, most: int) -> list[Exposure]:
        """Up to `most` queued exposures, without waiting."""
        batch: list[Exposure] = []
        get = self._queue.get_nowait
        with contextlib.suppress(queue.Empty):
            while len(batch) < most:
                batch.append(get())
        return batch

    def _write_batch(self, batch: list[Exposure]) -> None:
        """Encode, write (rotating as needed) and count one batch."""
        lines: list[bytes] = []
        error: str | None = None
        for exposure in batch:
            try:
                lines.append(exposure.to_json().encode("utf-8") + b"\n")
            except (TypeError, ValueError) as exc:
                error = f"cannot encode exposure: {exc}"
        written = 0
        try:
            written = self._write_lines(lines)
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
            self._discard_file()
            self._disk_failing = True
        else:
            if self._disk_failing and lines:
                log.info("exposure log %s: writing again", self.path)
                self._disk_failing = False
        self._counts.done(written, len(batch) - written, error)

    def _write_lines(self, lines: list[bytes]) -> int:
        """Write the lines, rotating before one would take the file past max_bytes."""
        if not lines:
            return 0
        rotating = self.max_bytes > 0 and self.backups > 0
        written, chunk_bytes = 0, 0
        chunk: list[bytes] = []
        self._open()
        for line in lines:
            after = self._size + chunk_bytes + len(line)
            if rotating and after > self.max_bytes and self._size + chunk_bytes > 0:
                self._append(b"".join(chunk))
                written, chunk_bytes = written + len(chunk), 0
                chunk = []
                self._rotate()
            chunk.append(line)
            chunk_bytes += len(line)
        self._append(b"".join(chunk))
        return written + len(chunk)

    def _open(self) -> None:
        """Open the file for appending unless open, ending a cut-off last line first."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = _open_append(self.path)
        try:
            size = os.fstat(fd).st_size
            if size:
                # A crash mid-write leaves a partial line; keep it off the next record's line.
                os.lseek(fd, size - 1, os.SEEK_SET)
                if os.read(fd, 1) != b"\n":
                    _write_all(fd, b"\n")
                    size += 1
        except OSError:
            os.close(fd)
            raise
        self._fd, self._size = fd, size

    def _append(self, data: bytes) -> None:
        """Append bytes; on failure cut the file back so no partial line stays in it."""
        if not data:
            return
        assert self._fd is not None
        try:
            _write_all(self._fd, data)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise
        self._size += len(data)

    def _rotate(self) -> None:
        """path -> path.1 -> ... -> path.<backups>; the oldest is replaced, then reopen."""
        self._discard_file()
        for i in range(self.backups - 1, 0, -1):
            older = _backup(self.path, i)
            if older.exists():
                os.replace(older, _backup(self.path, i + 1))
        os.replace(self.path, _backup(self.path, 1))
        self._open()

    def _discard_file(self) -> None:
        """Close the file (ignoring errors); the next batch opens it again."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _open_append(path: Path) -> int:
    """A file descriptor appending to path (created 0o644 less the umask)."""
    return os.open(path, _OPEN_FLAGS, 0o644)


def _write_all(fd: int, data: bytes) -> None:
    """Write all of data (os.write may write only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _backup(path: Path, i: int) -> Path:
    return path.with_name(f"{path.name}.{i}")


class MemoryExposureLog(_Closing):
    """An ExposureSink keeping Exposure objects in `exposures`, for tests and notebooks.

    At most `max_records` are kept; later ones are counted as dropped, as are those recorded
    after close().
    """

    def __init__(self, max_records: int = 100_000) -> None:
        if max_records < 0:
            raise ValueError(f"max_records must be >= 0 (got {max_records})")
        self.max_records = max_records
        self.exposures: list[Exposure] = []
        self._counts = _Counts("in memory")
        self._closed = False

    def record(self, exposure: Exposure) -> None:
        """Keep the exposure if there is room and the log is open; else count it as dropped."""
        with self._counts.lock:
            room = not self._closed and len(self.exposures) < self.max_records
            if room:
                self.exposures.append(exposure)
                self._counts.recorded += 1
                self._counts.written += 1
                return
            closed = self._closed
        why = "recorded after close()" if closed else f"full ({self.max_records} kept)"
        self._counts.drop(1, why)

    def stats(self) -> SinkStats:
        """A snapshot of what happened to the exposures so far."""
        return self._counts.stats()

    def close(self) -> SinkStats:
        """Stop accepting exposures and report; idempotent."""
        with self._counts.lock:
            again, self._closed = self._closed, True
        if not again:
            self._counts.summary()
        return self.stats()

    def to_frame(self) -> pd.DataFrame:
        """The kept exposures as read_exposures would return them from a file."""
        with self._counts.lock:
            kept = list(self.exposures)
        return _frame([json.loads(e.to_json()) for e in kept])


def read_exposures(paths: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """Exposures from JSON-lines files (rotated ones included when a directory or glob is given).

    One row per shown list: time, experiment, variant, user_id, visitor_id, model_version,
    items (list), ranks (list), sources (list); ids keep their int or str values and None
    stays None. Rows come in file order: a directory or glob is read log by log (by name),
    each from its oldest rotated file (the highest `.N`) to the live one. Blank lines are
    skipped; a malformed line raises InputFileError naming the file and line.
    """
    rows: list[dict[str, Any]] = []
    for path in _exposure_files(paths):
        rows.extend(_read_file(path))
    return _frame(rows)


def _exposure_files(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    """The files to read, in order, each once."""
    given = [paths] if isinstance(paths, str | Path) else list(paths)
    files: list[Path] = []
    for entry in given:
        path = Path(entry)
        if path.is_dir():
            files += _log_order(p for p in path.iterdir() if p.is_file() and p.name[0] != ".")
        elif path.is_file():
            files.append(path)
        elif any(c in str(entry) for c in "*?["):
            found = [Path(p) for p in glob.glob(str(entry)) if Path(p).is_file()]
            if not found:
                raise InputFileError(f"{entry}: no exposure log file matches this pattern")
            files += _log_order(found)
        else:
            raise InputFileError(f"{path}: exposure log not found")
    return list(dict.fromkeys(files))


def _log_order(files: Iterable[Path]) -> list[Path]:
    """Group `name` with its backups `name.N`, oldest (highest N) first, the live file last."""

    def key(path: Path) -> tuple[str, str, int]:
        base, _, number = path.name.rpartition(".")
        if base and number.isdigit():
            return str(path.parent), base, -int(number)
        return str(path.parent), path.name, 0

    return sorted(files, key=key)


def _read_file(path: Path) -> list[dict[str, Any]]:
    """The records of one file, each checked."""
    rows: list[dict[str, Any]] = []
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise InputFileError(f"{path}, line {number}: not UTF-8 ({exc.reason})") from None
            except json.JSONDecodeError as exc:
                cut = "" if raw.endswith(b"\n") else " (the file ends mid-line: a cut-off write?)"
                raise InputFileError(
                    f"{path}, line {number}: not a JSON exposure record "
                    f"({exc.msg} at column {exc.colno}){cut}"
                ) from None
            problem = _problem(record)
            if problem:
                raise InputFileError(f"{path}, line {number}: {problem}")
            rows.append(record)
    return rows


def _problem(record: Any) -> str | None:
    """What makes a decoded line not an exposure record, or None."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    missing = [c for c in COLUMNS if c not in record]
    if missing:
        return f"not an exposure record (missing {', '.join(missing)})"
    time = record["time"]
    if isinstance(time, bool) or not isinstance(time, int):
        return f"time must be whole Unix seconds (got {time!r})"
    lists = [record[c] for c in ("items", "ranks", "sources")]
    if not all(isinstance(v, list) for v in lists):
        return "items, ranks and sources must be JSON lists"
    if len({len(v) for v in lists}) > 1:
        return "items, ranks and sources differ in length ({}, {}, {})".format(*map(len, lists))
    return None


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The exposure table; object columns so int ids stay int and None stays None."""
    columns: dict[str, Any] = {
        c: pd.Series([r[c] for r in rows], dtype=object) for c in COLUMNS if c != "time"
    }
    columns["time"] = pd.Series([r["time"] for r in rows], dtype=np.int64)
    return pd.DataFrame(columns, columns=list(COLUMNS))
