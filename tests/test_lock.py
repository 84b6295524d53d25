"""The run lock: one nightly run per model directory; locks of dead or old runs are taken over."""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from recsys.errors import LockedError
from training.lock import RunLock, _read

GUARD_ONLY = [".lock.guard"]  # the guard file stays; the lock itself is gone


def names(root: Path) -> list[str]:
    """Names of the files in a folder, sorted."""
    return sorted(entry.name for entry in root.iterdir())


def utc(moment: datetime) -> str:
    """Format a time the way lock files hold it."""
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def write_lock(root: Path, pid: int, host: str, started: str) -> Path:
    """Write the lock file of another run, as that run would have; return its path."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / ".lock"
    info = {"pid": pid, "host": host, "started": started, "token": "someone-else"}
    path.write_text(json.dumps(info) + "\n", encoding="utf-8")
    return path


def dead_pid() -> int:
    """Return the id of a process of this host that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_run_holds_the_lock_for_its_block_and_leaves_nothing_behind(tmp_path: Path) -> None:
    root = tmp_path / "models"  # created by the lock
    with RunLock(root, command="recsys train --config shop.toml") as lock:
        assert lock.held
        info = json.loads((root / ".lock").read_text(encoding="utf-8"))
        assert info["pid"] == os.getpid()
        assert info["host"] == socket.gethostname()
        assert info["command"] == "recsys train --config shop.toml"
        started = datetime.fromisoformat(info["started"])
        assert info["started"].endswith("Z")
        assert abs((datetime.now(UTC) - started).total_seconds()) < 60
    assert not lock.held
    assert names(root) == GUARD_ONLY
    with RunLock(root):  # the next night's run takes it again
        pass
    assert names(root) == GUARD_ONLY


def test_a_second_run_is_refused_while_the_first_holds_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    lock = Path("models/.lock")
    with RunLock(Path("models")):
        held = lock.read_bytes()
        with pytest.raises(LockedError) as err, RunLock(Path("models")):
            pass
        started = json.loads(held)["started"]
        assert str(err.value) == (
            f"models: another run holds the lock since {started} (pid {os.getpid()} on host "
            f"{socket.gethostname()}); wait for it, or remove models/.lock if that run is dead"
        )
        assert lock.read_bytes() == held  # the refused run left the first run's lock alone
    assert not lock.exists()


def test_the_refusal_names_the_holder_and_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    started = utc(datetime.now(UTC) - timedelta(hours=1))
    # A live process of this host: the test process itself.
    lock = write_lock(Path("models"), os.getpid(), socket.gethostname(), started)
    with pytest.raises(LockedError) as err, RunLock(Path("models")):
        pass
    assert str(err.value) == (
        f"models: another run holds the lock since {started} (pid {os.getpid()} on host "
        f"{socket.gethostname()}); wait for it, or remove models/.lock if that run is dead"
    )
    # On another host the pid cannot be checked, so a recent lock there counts as live.
    write_lock(Path("models"), 4242, "shop-1", started)
    with pytest.raises(LockedError) as err, RunLock(Path("models")):
        pass
    assert str(err.value) == (
        f"models: another run holds the lock since {started} (pid 4242 on host shop-1); "
        "wait for it, or remove models/.lock if that run is dead"
    )
    assert json.loads(lock.read_text(encoding="utf-8"))["pid"] == 4242


def test_the_lock_of_a_crashed_run_on_this_host_is_taken_over_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "models"
    pid = dead_pid()
    started = utc(datetime.now(UTC) - timedelta(minutes=5))
    write_lock(root, pid, socket.gethostname(), started)
    with caplog.at_level(logging.WARNING, logger="training.lock"), RunLock(root):
        info = json.loads((root / ".lock").read_text(encoding="utf-8"))
        assert info["pid"] == os.getpid()
    assert caplog.messages == [
        f"{root}: taking over a stale lock: the lock of pid {pid} on host "
        f"{socket.gethostname()} since {started} names a process that is no longer running"
    ]
    assert names(root) == GUARD_ONLY


def test_a_lock_older_than_the_longest_run_is_taken_over(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "models"
    started = utc(datetime.now(UTC) - timedelta(hours=30))
    write_lock(root, 4242, "shop-1", started)
    with caplog.at_level(logging.WARNING, logger="training.lock"), RunLock(root):
        assert json.loads((root / ".lock").read_text(encoding="utf-8"))["pid"] == os.getpid()
    assert caplog.messages == [
        f"{root}: taking over a stale lock: the lock of pid 4242 on host shop-1 since {started} "
        "is 30.0 hours old, more than the 24 hours a run may take"
    ]
    # A shorter limit makes a younger lock stale too.
    write_lock(root, 4242, "shop-1", utc(datetime.now(UTC) - timedelta(hours=3)))
    with pytest.raises(LockedError):
        RunLock(root).acquire()
    with RunLock(root, stale_after_hours=2):
        pass
    assert names(root) == GUARD_ONLY


@pytest.mark.parametrize(
    "content",
    [b"", b"not json at all", b'{"pid": "4242", "host": "shop-1"}', b"\xff\xfe\x00garbage"],
    ids=["empty", "not-json", "wrong-fields", "binary"],
)
def test_an_unreadable_lock_left_by_a_crash_is_taken_over(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "models"
    root.mkdir()
    lock = root / ".lock"
    lock.write_bytes(content)
    an_hour_ago = time.time() - 3600
    os.utime(lock, (an_hour_ago, an_hour_ago))
    with caplog.at_level(logging.WARNING, logger="training.lock"), RunLock(root):
        assert json.loads(lock.read_text(encoding="utf-8"))["pid"] == os.getpid()
    assert caplog.messages == [
        f"{root}: taking over a stale lock: {lock} is unreadable and 60 minutes old"
    ]
    assert names(root) == GUARD_ONLY


def test_a_lock_still_being_written_is_not_mistaken_for_garbage(tmp_path: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    (root / ".lock").write_bytes(b"")  # another run created it a moment ago
    with pytest.raises(LockedError) as err, RunLock(root):
        pass
    assert str(err.value) == (
        f"{root}: another run is taking the lock right now ({root / '.lock'} is not readable "
        f"yet); try again in a minute, or remove {root / '.lock'} if no run is starting"
    )
    assert (root / ".lock").read_bytes() == b""


def test_the_lock_is_released_when_the_run_fails(tmp_path: Path) -> None:
    root = tmp_path / "models"
    with pytest.raises(RuntimeError, match="ALS diverged"), RunLock(root):
        raise RuntimeError("ALS diverged")
    assert not (root / ".lock").exists()
    with RunLock(root):
        pass


def test_a_run_whose_lock_was_taken_over_leaves_the_new_holders_lock_in_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "models"
    started = utc(datetime.now(UTC))
    with caplog.at_level(logging.WARNING, logger="training.lock"), RunLock(root):
        # Another run judged this one stale and took over.
        write_lock(root, 4242, "shop-2", started)
    info = json.loads((root / ".lock").read_text(encoding="utf-8"))
    assert (info["pid"], info["host"]) == (4242, "shop-2")
    assert caplog.messages == [
        f"{root}: the lock now belongs to another run (pid 4242 on host shop-2 since {started}); "
        "leaving it in place"
    ]


def test_of_two_runs_taking_over_the_same_stale_lock_only_one_gets_it(tmp_path: Path) -> None:
    root = tmp_path / "models"
    lock = write_lock(root, dead_pid(), socket.gethostname(), utc(datetime.now(UTC)))
    slow, fast = RunLock(root), RunLock(root)
    seen = _read(lock)  # the slow run has judged the stale lock...
    assert seen is not None
    fast.acquire()  # ...when the fast run takes it over
    fresh = lock.read_bytes()
    assert not slow._move_aside(seen)  # the slow run moves the fresh lock, sees it, puts it back
    assert lock.read_bytes() == fresh
    with pytest.raises(LockedError, match="another run holds the lock"):
        slow.acquire()
    fast.release()
    assert names(root) == GUARD_ONLY


RACER = """
import json, os, sys, time
from pathlib import Path
from recsys.errors import LockedError
from training.lock import RunLock

root, go = Path(sys.argv[1]), sys.argv[2]
print("ready", flush=True)
while not os.path.exists(go):  # spin, so that every racer starts within microseconds
    pass
try:
    with RunLock(root):
        began = time.monotonic()
        time.sleep(0.2)
        print(json.dumps([began, time.monotonic()]))
except LockedError:
    print("null")
"""


@pytest.mark.slow  # six Python processes
def test_runs_started_together_on_a_stale_lock_never_overlap(tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_lock(root, dead_pid(), socket.gethostname(), utc(datetime.now(UTC)))
    go = tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(root), str(go)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        for _ in range(6)
    ]
    try:
        for racer in racers:
            assert racer.stdout is not None
            assert racer.stdout.readline() == "ready\n"
    finally:
        go.touch()  # never leave a racer spinning, even when this test fails
    outputs = [json.loads(racer.communicate(timeout=60)[0]) for racer in racers]
    held = sorted(span for span in outputs if span is not None)
    assert held, "no run took the stale lock"
    for (_, end), (begin, _) in itertools.pairwise(held):
        assert end <= begin, "two runs held the lock at the same time"
    assert names(root) == GUARD_ONLY


def test_a_lock_cannot_be_taken_twice_by_the_same_object(tmp_path: Path) -> None:
    root = tmp_path / "models"
    lock = RunLock(root)
    with lock:
        with pytest.raises(LockedError) as err:
            lock.acquire()
        assert str(err.value) == f"{root}: this RunLock already holds {root / '.lock'}"
    assert not (root / ".lock").exists()


def test_the_staleness_limit_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"stale_after_hours must be > 0 \(got 0\)"):
        RunLock(tmp_path, stale_after_hours=0)
