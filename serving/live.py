"""Live events between nightly runs: what each visitor did since the published model's data ended.

`Recommender.record_event` puts events here; every answer reads the visitor's events on top of
the model (a purchase drops the item unless people rebuy it, a cart or favourite becomes a
reminder, views steer the neighbours, and a visitor the model does not know is folded in from
them). The store is in-process and thread-safe, bounded per visitor and in total, with a TTL.
Events are kept by the shop's ids, so they survive a model reload; an answer reads only those
newer than the model's data, so the next nightly model takes over from them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

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


@dataclass
class LiveStats:
    """What the store holds and has let go of."""

    users: int = 0
    events: int = 0
    recorded: int = 0
    # visitors forgotten because the store was full (the longest-quiet first).
    evicted_users: int = 0
    # events pushed out by a visitor's newer ones, or older than the TTL.
    dropped_events: int = 0


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
