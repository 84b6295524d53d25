"""Time-based splits (train on the past, test on what came next) and visits cut into sessions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.errors import NotEnoughHistoryError

_DAY = 86_400


@dataclass(frozen=True)
class TimeSplit:
    """Events before `cut` (train) and at or after it (test)."""

    train: pd.DataFrame
    test: pd.DataFrame
    cut: int


def time_split(
    events: pd.DataFrame, holdout_days: float | None = None, *, holdout_share: float | None = None
) -> TimeSplit:
    """Hold out the last holdout_days of the log, or the last holdout_share of its time span.

    The cut is measured from the newest event; no test event is earlier than any train event.
    """
    if (holdout_days is None) == (holdout_share is None):
        raise ValueError("give exactly one of holdout_days and holdout_share")
    if holdout_days is not None and holdout_days <= 0:
        raise ValueError(f"holdout_days must be > 0 (got {holdout_days})")
    if holdout_share is not None and not 0 < holdout_share < 1:
        raise ValueError(f"holdout_share must be in (0, 1) (got {holdout_share})")
    if len(events) == 0:
        raise NotEnoughHistoryError("cannot split an empty event log")
    times = events["timestamp"].to_numpy()
    newest = int(times.max())
    if holdout_days is not None:
        cut = newest - int(holdout_days * _DAY)
        held = f"the last {holdout_days:g} days"
    else:
        assert holdout_share is not None
        cut = newest - int(holdout_share * (newest - int(times.min())))
        held = f"the last {holdout_share:.0%} of the log's time span"
    before = times < cut
    if not before.any():
        raise NotEnoughHistoryError(f"every event falls in {held}: nothing to train on before them")
    return TimeSplit(
        train=events.loc[before].reset_index(drop=True),
        test=events.loc[~before].reset_index(drop=True),
        cut=cut,
    )


def cut_sessions(
    users: np.ndarray,
    times: np.ndarray,
    gap_seconds: float,
    baskets: np.ndarray | None = None,
) -> np.ndarray:
    """Number the sessions of rows sorted by (user, time): 0, 1, 2, ... in row order.

    A new session starts at a new user, after more than `gap_seconds` without an event, or,
    where `baskets` (invoice or basket ids) are given, at a new basket: in a purchase log one
    invoice is one visit, even when two invoices fall minutes apart. Where both rows have a
    basket id, the id alone decides (one basket is one visit, however long it took).
    """
    users, times = np.asarray(users), np.asarray(times)
    if len(users) != len(times) or (baskets is not None and len(baskets) != len(users)):
        raise ValueError("users, times and baskets must have one value per row")
    if len(users) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.empty(len(users), dtype=bool)
    starts[0] = True
    starts[1:] = users[1:] != users[:-1]
    if np.any(~starts[1:] & (times[1:] < times[:-1])):
        raise ValueError("rows must be sorted by user, then time")
    if baskets is not None:
        basket = pd.Series(baskets)
        named = basket.notna().to_numpy()
        # A row without a basket id falls back to the inactivity rule.
        changed = np.asarray(basket.iloc[1:].to_numpy() != basket.iloc[:-1].to_numpy())
        both = named[1:] & named[:-1]
        starts[1:] |= np.where(both, changed, times[1:] - times[:-1] > gap_seconds)
    else:
        starts[1:] |= times[1:] - times[:-1] > gap_seconds
    return np.cumsum(starts) - 1
