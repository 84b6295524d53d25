"""One run at a time per model directory: an exclusive lock file, taken over when its run died."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from recsys.errors import LockedError

if sys.platform != "win32":
    import fcntl

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"
# A permanent empty file, flock-ed for the few microseconds a run spends creating, taking over or
# removing the lock file, so that those steps never interleave between runs.
GUARD_NAME = ".lock.guard"
# Without the guard (Windows) a run may see another's lock file between its creation and its
# writing; an unreadable lock younger than this is therefore not yet taken for a crash's leftover.
UNREADABLE_GRACE_SECONDS = 30.0
# Rounds of look-and-take-over before giving up when other runs keep changing the lock.
_ATTEMPTS = 5


@dataclass(frozen=True)
class _Holder:
    """The run a lock file names."""

    pid: int
    host: str
    started: datetime
    started_text: str
    token: str | None

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host} since {self.started_text}"


@dataclass(frozen=True)
class _Seen:
    """One lock file as read from disk: its bytes, its identity, its age and the run it names."""

    raw: bytes
    identity: tuple[int, int]
    mtime: float
    holder: _Holder | None  # None when the file is unreadable or not a lock this code wrote


class RunLock:
    """Hold ROOT/.lock for the length of a `with` block so that two runs never write ROOT at once.

    A lock left behind is taken over, with a warning, when its run is gone: its process is dead
    (checked only on the same host), it is older than `stale_after_hours`, or it is unreadable.
    """

    def __init__(
        self, root: Path, stale_after_hours: float = 24.0, command: str | None = None
    ) -> None:
        if not stale_after_hours > 0:
            raise ValueError(f"RunLock: stale_after_hours must be > 0 (got {stale_after_hours})")
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self.stale_after_hours = stale_after_hours
        self.command = command
        self._token: str | None = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._token is not None

    def acquire(self) -> None:
        """Take the lock, taking over a stale one; raise LockedError if a live run holds it."""
        if self._token is not None:
            raise LockedError(f"{self.root}: this RunLock already holds {self.path}")
        self.root.mkdir(parents=True, exist_ok=True)
        with _guard(self.root):
            for _ in range(_ATTEMPTS):
                if self._try_create():
                    return
                seen = _read(self.path)
                if seen is None:
                    continue  # released between our attempt and our look: try again
                reason = self._stale_reason(seen)
                if reason is None:
                    raise LockedError(self._held_message(seen))
                if self._move_aside(seen):
                    logger.warning("%s: taking over a stale lock: %s", self.root, reason)
        raise LockedError(
            f"{self.root}: other runs kept taking and releasing {self.path} while this run tried "
            "to take it; make sure only one scheduler starts runs, then try again"
        )

    def release(self) -> None:
        """Remove the lock file if it is still ours; leave anyone else's in place."""
        token, self._token = self._token, None
        if token is None:
            return
        if not self.root.is_dir():
            logger.warning("%s: the model directory vanished while this run held it", self.root)
            return
        with _guard(self.root):
            seen = _read(self.path)
            if seen is None:
                logger.warning("%s: the lock was already gone when this run ended", self.root)
                return
            if seen.holder is None or seen.holder.token != token:
                # Another run took the lock over (it judged ours stale); removing it would let a
                # third run in beside that one.
                what = seen.holder.describe() if seen.holder else "unreadable"
                logger.warning(
                    "%s: the lock now belongs to another run (%s); leaving it in place",
                    self.root,
                    what,
                )
                return
            self.path.unlink()

    def _try_create(self) -> bool:
        """Create the lock file if there is none; return whether this run now holds the lock."""
        token = uuid.uuid4().hex
        info: dict[str, object] = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _utc_now(),
            "token": token,
        }
        if self.command is not None:
            info["command"] = self.command
        try:
            # O_EXCL: creating fails if the file exists, atomically, even across processes.
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write((json.dumps(info) + "\n").encode("utf-8"))
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        self._token = token
        return True

    def _stale_reason(self, seen: _Seen) -> str | None:
        """Say why a lock is stale, or return None if its run may still be going."""
        if seen.holder is None:
            minutes = (time.time() - seen.mtime) / 60
            if minutes * 60 < UNREADABLE_GRACE_SECONDS:
                return None
            return f"{self.path} is unreadable and {minutes:.0f} minutes old"
        holder = seen.holder
        if holder.host == socket.gethostname() and not _pid_alive(holder.pid):
            return f"the lock of {holder.describe()} names a process that is no longer running"
        hours = (datetime.now(UTC) - holder.started).total_seconds() / 3600
        if hours > self.stale_after_hours:
            return (
                f"the lock of {holder.describe()} is {hours:.1f} hours old, more than the "
                f"{self.stale_after_hours:g} hours a run may take"
            )
        return None

    def _held_message(self, seen: _Seen) -> str:
        if seen.holder is None:
            return (
                f"{self.root}: another run is taking the lock right now ({self.path} is not "
                f"readable yet); try again in a minute, or remove {self.path} if no run is starting"
            )
        holder = seen.holder
        return (
            f"{self.root}: another run holds the lock since {holder.started_text} "
            f"(pid {holder.pid} on host {holder.host}); wait for it, or remove {self.path} "
            "if that run is dead"
        )

    def _move_aside(self, seen: _Seen) -> bool:
        """Move the stale lock `seen` out of the way; return False if it was no longer there.

        Under the guard no other run changes the lock meanwhile. Without it (Windows, or a lock
        changed by hand) two runs may judge the same lock stale at once: renaming is atomic, so
        only one moves it; the other moves nothing, or moves the fresh lock the first one just
        made, sees that it is not the file it judged, and puts it back.
        """
        aside = self.root / f"{LOCK_NAME}.stale-{uuid.uuid4().hex}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        moved = _read(aside)
        if moved is not None and moved.raw == seen.raw and moved.identity == seen.identity:
            aside.unlink()
            return True
        try:
            # link, unlike rename, never replaces a lock file another run created meanwhile.
            os.link(aside, self.path)
        except FileExistsError:
            pass  # a third run took the lock in between; the run we moved will warn on release
        finally:
            aside.unlink(missing_ok=True)
        return False


@contextmanager
def _guard(root: Path) -> Iterator[None]:
    """Hold ROOT/.lock.guard exclusively; the system releases it when the process ends, however."""
    if sys.platform == "win32":
        yield  # no flock; _move_aside's rename-and-check still stops most races
        return
    fd = os.open(root / GUARD_NAME, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the file releases the flock


def _read(path: Path) -> _Seen | None:
    """Read a lock file, or return None if there is none."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(64 * 1024)
            stat = os.fstat(fh.fileno())
    except FileNotFoundError:
        return None
    return _Seen(raw, (stat.st_dev, stat.st_ino), stat.st_mtime, _parse(raw))


def _parse(raw: bytes) -> _Holder | None:
    """Return the run a lock file names, or None if the file is not a well-formed lock."""
    try:
        info = json.loads(raw.decode("utf-8"))
        pid, host, started_text = info["pid"], info["host"], info["started"]
        token = info.get("token")
        started = datetime.fromisoformat(started_text)
    except (UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError):
        return None
    valid = (
        isinstance(pid, int)
        and not isinstance(pid, bool)
        and 0 < pid < 2**31  # os.kill takes a C int; 0 and negatives mean process groups
        and isinstance(host, str)
        and started.tzinfo is not None
        and (token is None or isinstance(token, str))
    )
    if not valid:
        return None
    return _Holder(pid, host, started, started_text, token)


def _pid_alive(pid: int) -> bool:
    """Whether a process of this host with this id exists."""
    if sys.platform == "win32":
        # os.kill on Windows terminates the process instead of probing it; rely on the age rule.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, but owned by another user
    return True


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
