"""Small hand-built logs for model tests, as FitData."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from recsys.config import MatrixConfig
from recsys.history import UserHistory
from recsys.ids import IdMap
from recsys.matrix import confidence_matrix
from recsys.models.base import FitData

DAY = 86_400
T0 = 1_600_000_000


def fit_data(
    rows: list[tuple[Any, ...]],
    users: list[Any] | None = None,
    items: list[Any] | None = None,
    weights: dict[str, float] | None = None,
    **attributes: Any,
) -> FitData:
    """FitData from (user, item, event, day[, session]) rows; time = T0 + day days."""
    frame = pd.DataFrame(
        [
            {
                "user": r[0],
                "item": r[1],
                "event": int(r[2]),
                "timestamp": T0 + int(r[3] * DAY),
                "quantity": 1.0,
                "price": np.nan,
                **({"session": r[4]} if len(r) > 4 else {}),
            }
            for r in rows
        ]
    )
    user_map = IdMap(users) if users is not None else IdMap.from_values(frame["user"])
    item_map = IdMap(items) if items is not None else IdMap.from_values(frame["item"])
    config = MatrixConfig(
        weights=weights or {"view": 1.0, "cart": 1.0, "purchase": 1.0}, repeats="once"
    )
    matrix, _ = confidence_matrix(frame, user_map, item_map, config)
    history = UserHistory.from_events(frame, user_map, item_map)
    return FitData.from_matrix(matrix, history, int(frame["timestamp"].max()), **attributes)
