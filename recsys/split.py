"""Time-based splits: train on the past, evaluate on what happened next."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from recsys.errors import NotEnoughHistoryError

_DAY = 86_400


@dataclass(frozen=True)
class TimeSplit:
    """Events before `cut` (train) and at or after it (test)."""

    train: pd.DataFrame
    test: pd.DataFrame
    cut: int


def time_split(events: pd.DataFrame, holdout_days: float) -> TimeSplit:
    """Hold out the last holdout_days of the log (by its newest event); no test event is earlier."""
    if holdout_days <= 0:
        raise ValueError(f"holdout_days must be > 0 (got {holdout_days})")
    if len(events) == 0:
        raise NotEnoughHistoryError("cannot split an empty event log")
    newest = int(events["timestamp"].max())
    cut = newest - int(holdout_days * _DAY)
    before = events["timestamp"].to_numpy() < cut
    if not before.any():
        raise NotEnoughHistoryError(
            f"every event falls in the last {holdout_days:g} days: nothing to train on before them"
        )
    return TimeSplit(
        train=events.loc[before].reset_index(drop=True),
        test=events.loc[~before].reset_index(drop=True),
        cut=cut,
    )
