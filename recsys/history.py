"""Per-user, time-ordered event histories, for sessions, recency and repurchase cycles."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.ids import IdMap


@dataclass(frozen=True)
class UserHistory:
    """Every user's events, oldest first, in CSR layout: user u owns rows indptr[u]:indptr[u+1].

    Events whose user or item is not in the id maps are left out.
    """

    indptr: np.ndarray  # int64, n_users + 1
    items: np.ndarray  # int32 item indices
    events: np.ndarray  # int8 EventType codes
    timestamps: np.ndarray  # int64 Unix seconds
    quantities: np.ndarray  # float32
    # basket (session / invoice) code of each event, -1 when the log has none; codes are dense.
    baskets: np.ndarray  # int64

    @classmethod
    def from_events(cls, events: pd.DataFrame, users: IdMap, items: IdMap) -> UserHistory:
        """Build histories from canonical events; ties in time keep the log's order."""
        u = users.index(events["user"].to_numpy())
        i = items.index(events["item"].to_numpy())
        mapped = (u >= 0) & (i >= 0)
        u, i = u[mapped], i[mapped]
        ts = events["timestamp"].to_numpy()[mapped]
        # One stable sort on a packed (user, time) key is several times faster than lexsort.
        low = int(ts.min()) if len(ts) else 0
        span = int(ts.max()) - low if len(ts) else 0
        if span < 2**40 and len(users) < 2**22:
            order = np.argsort((u.astype(np.int64) << 40) | (ts - low), kind="stable")
        else:
            order = np.lexsort((ts, u))
        counts = np.bincount(u, minlength=len(users))
        indptr = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(
            indptr=indptr,
            items=i[order].astype(np.int32),
            events=events["event"].to_numpy()[mapped][order].astype(np.int8),
            timestamps=ts[order].astype(np.int64),
            quantities=events["quantity"].to_numpy()[mapped][order].astype(np.float32),
            baskets=_basket_codes(events, mapped)[order],
        )

    @property
    def n_users(self) -> int:
        """Number of users (rows of indptr minus one)."""
        return len(self.indptr) - 1

    def __len__(self) -> int:
        return len(self.items)

    def of(self, user: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (item indices, event codes, timestamps) of one user's events, oldest first."""
        if not 0 <= user < self.n_users:
            raise IndexError(f"user index {user} is outside 0..{self.n_users - 1}")
        lo, hi = self.indptr[user], self.indptr[user + 1]
        return self.items[lo:hi], self.events[lo:hi], self.timestamps[lo:hi]

    def lengths(self) -> np.ndarray:
        """Number of events per user."""
        return np.diff(self.indptr)

    def arrays(self) -> dict[str, np.ndarray]:
        """Named arrays for saving without pickle."""
        return {
            "indptr": self.indptr,
            "items": self.items,
            "events": self.events,
            "timestamps": self.timestamps,
            "quantities": self.quantities,
            "baskets": self.baskets,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> UserHistory:
        """Rebuild from the arrays returned by arrays()."""
        return cls(**{name: np.asarray(arrays[name]) for name in cls.__dataclass_fields__})


def _basket_codes(events: pd.DataFrame, mapped: np.ndarray) -> np.ndarray:
    if "session" not in events:
        return np.full(int(mapped.sum()), -1, dtype=np.int64)
    sessions = events["session"].iloc[np.flatnonzero(mapped)]
    codes, _ = pd.factorize(sessions, use_na_sentinel=True)
    return codes.astype(np.int64)
