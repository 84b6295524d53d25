"""Per-step timings of the nightly job, logged as each step ends."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("training")


class Steps:
    """Times consecutive steps: call done(name) at the end of each."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._clock = time.perf_counter()

    def done(self, name: str) -> None:
        """Record the time since the previous step ended and log it."""
        now = time.perf_counter()
        seconds = round(now - self._clock, 3)
        self.timings[name] = self.timings.get(name, 0.0) + seconds
        log.info("%s: %.2fs", name, seconds)
        self._clock = now

    def merge(self, timings: dict[str, float]) -> None:
        """Record steps timed elsewhere (e.g. by the loader) and restart the clock."""
        for name, seconds in timings.items():
            self.timings[name] = self.timings.get(name, 0.0) + seconds
        self._clock = time.perf_counter()

    @property
    def total(self) -> float:
        """Sum of all recorded steps, in seconds."""
        return round(sum(self.timings.values()), 3)
