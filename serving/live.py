"""Live events between nightly runs: what each visitor did since the published model's data ended.

`Recommender.record_event` puts events here; every answer reads the visitor's events on top of
the model (a purchase drops the item unless people rebuy it, a cart or favourite becomes a
reminder, views steer the neighbours, and a visitor the model does not know is folded in from
them). Two stores, one interface (`LiveEventStore`): `LiveStore`, in-process and thread-safe
(the default), and `RedisLiveStore`, shared by several worker processes or machines. Both are
bounded per visitor, with a TTL. Events are kept by the shop's ids, so they survive a model
reload; an answer reads only those newer than the model's data, so the next nightly model takes
over from them.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import numpy as np

from recsys.blend import NO_EVENTS, Events
from recsys.config import LiveConfig
from recsys.ids import IdMap
from recsys.schema import EVENT_TYPES


class LiveEvent(NamedTuple):
    """One event as recorded: the shop's item id, event type code, Unix seconds, quantity."""

    item_id: Any
    event: int
    timestamp: int
    quantity: float | None


log = logging.getLogger(__name__)


@dataclass
class LiveStats:
    """What the store holds and has let go of (-1: the store does not know)."""

    users: int = 0
    events: int = 0
    recorded: int = 0
    # visitors forgotten because the store was full (the longest-quiet first).
    evicted_users: int = 0
    # events pushed out by a visitor's newer ones, older than the TTL, or not written because
    # the shared store was down.
    dropped_events: int = 0
    # calls to a shared store that failed or timed out (answers went on from the model alone).
    errors: int = 0


class LiveEventStore(Protocol):
    """Where live events are kept: in this process, or shared (Redis)."""

    def add(self, key: Hashable, events: list[LiveEvent]) -> None:
        """Append a visitor's events."""
        ...

    def of(self, key: Hashable, now: float | None = None) -> list[LiveEvent]:
        """A visitor's events within the TTL, oldest first."""
        ...

    def clear(self) -> None:
        """Forget every visitor's events."""
        ...

    def stats(self) -> LiveStats:
        """What the store holds and has let go of."""
        ...


class LiveStore:
    """Recent events per visitor, in memory: bounded, thread-safe, forgetting after a TTL."""

    def __init__(self, config: LiveConfig | None = None) -> None:
        self.config = config or LiveConfig()
        self._lock = threading.Lock()
        self._users: OrderedDict[Hashable, deque[LiveEvent]] = OrderedDict()
        self._recorded = 0
        self._evicted = 0
        self._dropped = 0

    def add(self, key: Hashable, events: list[LiveEvent]) -> None:
        """Append a visitor's events (any order; they are read oldest first)."""
        cfg = self.config
        with self._lock:
            kept = self._users.get(key)
            if kept is None:
                kept = self._users[key] = deque(maxlen=cfg.max_events_per_user)
            else:
                self._users.move_to_end(key)
            overflow = max(len(kept) + len(events) - cfg.max_events_per_user, 0)
            kept.extend(events)
            self._recorded += len(events)
            self._dropped += overflow
            while len(self._users) > cfg.max_users:
                _key, gone = self._users.popitem(last=False)
                self._evicted += 1
                self._dropped += len(gone)

    def of(self, key: Hashable, now: float | None = None) -> list[LiveEvent]:
        """A visitor's events within the TTL, oldest first."""
        horizon = (time.time() if now is None else now) - self.config.ttl_hours * 3600
        with self._lock:
            kept = self._users.get(key)
            if not kept:
                return []
            fresh = [event for event in kept if event.timestamp >= horizon]
            if len(fresh) < len(kept):
                self._dropped += len(kept) - len(fresh)
                if fresh:
                    self._users[key] = deque(fresh, maxlen=self.config.max_events_per_user)
                else:
                    del self._users[key]
        fresh.sort(key=lambda event: event.timestamp)
        return fresh

    def clear(self) -> None:
        """Forget every visitor's events."""
        with self._lock:
            self._users.clear()

    def stats(self) -> LiveStats:
        """How many visitors and events the store holds, and what it let go of."""
        with self._lock:
            return LiveStats(
                users=len(self._users),
                events=sum(len(kept) for kept in self._users.values()),
                recorded=self._recorded,
                evicted_users=self._evicted,
                dropped_events=self._dropped,
            )


class RedisLiveStore:
    """Live events in Redis, shared by every worker: a list per visitor, trimmed and expiring.

    Every call waits at most `timeout` seconds; when Redis is down or slow, reads give no live
    events (the answer comes from the model alone) and writes are dropped, each counted and
    logged, and Redis is not asked again for `retry_after` seconds, so a dead server costs a
    page one timeout, not one per call. Nothing is raised to the caller. Bound the number of
    visitors with Redis's own `maxmemory` and an eviction policy (each key also expires).
    """

    def __init__(
        self,
        url: str,
        config: LiveConfig | None = None,
        *,
        prefix: str = "recsys:live:",
        timeout: float = 0.05,
        retry_after: float = 2.0,
        client: Any = None,
    ) -> None:
        import redis

        self.config = config or LiveConfig()
        self.url = url
        self.prefix = prefix
        self.retry_after = retry_after
        self._errors_type = redis.RedisError
        self._client = client or redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._lock = threading.Lock()
        self._recorded = 0
        self._dropped = 0
        self._errors = 0
        self._down_until = 0.0

    def _key(self, key: Hashable) -> str:
        # JSON keeps 17850 and "17850" apart, as the in-process store does.
        return self.prefix + json.dumps(key, separators=(",", ":"), default=str)

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, what: str, error: Exception, dropped: int = 0) -> None:
        with self._lock:
            self._errors += 1
            self._dropped += dropped
            self._down_until = time.monotonic() + self.retry_after
        log.warning("live events: Redis %s failed (%s); answering from the model alone for "
                    "%.1fs", what, error, self.retry_after)  # fmt: skip

    def add(self, key: Hashable, events: list[LiveEvent]) -> None:
        """Append a visitor's events; dropped (and counted) when Redis does not answer."""
        if not events:
            return
        if not self._available():
            with self._lock:
                self._dropped += len(events)
            return
        cfg = self.config
        name = self._key(key)
        payload = [json.dumps(list(event), separators=(",", ":")) for event in events]
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.rpush(name, *payload)
            pipe.ltrim(name, -cfg.max_events_per_user, -1)
            pipe.expire(name, max(int(cfg.ttl_hours * 3600), 1))
            length = pipe.execute()[0]
        except (self._errors_type, OSError) as error:
            self._failed("write", error, dropped=len(events))
            return
        with self._lock:
            self._recorded += len(events)
            self._dropped += max(int(length) - cfg.max_events_per_user, 0)

    def of(self, key: Hashable, now: float | None = None) -> list[LiveEvent]:
        """A visitor's events within the TTL, oldest first ([] when Redis does not answer)."""
        if not self._available():
            return []
        try:
            raw = self._client.lrange(self._key(key), 0, -1)
        except (self._errors_type, OSError) as error:
            self._failed("read", error)
            return []
        horizon = (time.time() if now is None else now) - self.config.ttl_hours * 3600
        events = []
        for entry in raw:
            item_id, event, timestamp, quantity = json.loads(entry)
            if timestamp >= horizon:
                events.append(LiveEvent(item_id, int(event), int(timestamp), quantity))
        events.sort(key=lambda e: e.timestamp)
        return events

    def clear(self) -> None:
        """Forget every visitor's events (this store's prefix only)."""
        try:
            for name in self._client.scan_iter(match=self.prefix + "*", count=1000):
                self._client.delete(name)
        except (self._errors_type, OSError) as error:
            self._failed("clear", error)

    def stats(self) -> LiveStats:
        """Counts of this process's calls; users and events are Redis's own (-1 if down)."""
        users = events = -1
        if self._available():
            try:
                names = list(self._client.scan_iter(match=self.prefix + "*", count=1000))
                users = len(names)
                events = sum(int(self._client.llen(name)) for name in names)
            except (self._errors_type, OSError) as error:
                self._failed("stats", error)
        with self._lock:
            return LiveStats(users, events, self._recorded, 0, self._dropped, self._errors)


def live_event(
    item_id: Any, event_type: Any, timestamp: Any = None, quantity: Any = None
) -> LiveEvent:
    """Check one event's fields and return it; a clear ValueError names the bad one."""
    if item_id is None or isinstance(item_id, bool | float) or not isinstance(item_id, Hashable):
        raise ValueError(f"item_id must be a whole number or text (got {item_id!r})")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise ValueError(f"event_type must be one of {EVENT_TYPES} (got {event_type!r})")
    return LiveEvent(
        item_id, EVENT_TYPES.index(event_type), _seconds(timestamp), _quantity(quantity)
    )


def store_key(user_id: Any, visitor_id: Any) -> Hashable:
    """Whose events these are: the user's, else the anonymous visitor's (kept apart)."""
    if user_id is not None:
        return ("user", user_id)
    if visitor_id is not None:
        return ("visitor", visitor_id)
    raise ValueError("an event needs a user_id or a visitor_id (whose event is it?)")


def events_for(events: list[LiveEvent], items: IdMap, data_end: int, now: int) -> Events:
    """A visitor's live events as model indices: items the model knows, after its data ended,
    and not after `now` (a call asking for an earlier moment does not see later events)."""
    rows = [e for e in events if data_end < e.timestamp <= now]
    if not rows:
        return NO_EVENTS
    index = np.array([items.index_of(e.item_id) for e in rows], dtype=np.int64)
    known = index >= 0
    if not known.any():
        return NO_EVENTS
    codes = np.array([e.event for e in rows], dtype=np.int8)
    times = np.array([e.timestamp for e in rows], dtype=np.int64)
    return Events(index[known], codes[known], times[known])


def _seconds(timestamp: Any) -> int:
    if timestamp is None:
        return int(time.time())
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            raise ValueError(
                f"timestamp {timestamp.isoformat()} has no time zone; pass an aware datetime "
                "or Unix seconds"
            )
        return int(timestamp.timestamp())
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float | np.number):
        raise ValueError(f"timestamp must be Unix seconds or an aware datetime (got {timestamp!r})")
    value = float(timestamp)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"timestamp must be finite Unix seconds >= 0 (got {timestamp!r})")
    return int(value)


def _quantity(quantity: Any) -> float | None:
    if quantity is None:
        return None
    if isinstance(quantity, bool) or not isinstance(quantity, int | float | np.number):
        raise ValueError(f"quantity must be a number (got {quantity!r})")
    value = float(quantity)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"quantity must be a finite number > 0 (got {quantity!r})")
    return value
