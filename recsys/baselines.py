"""Simple baselines the engine must beat, scored the same way as the blend."""

from __future__ import annotations

import numpy as np

from recsys.history import UserHistory
from recsys.models.popularity import PopularityModel
from recsys.schema import EventType


class BuyAgain:
    """Personal "buy again": a user's own most bought items, then the most popular ones.

    Items are ranked by how many times the user bought them, ties by the most recent
    purchase, then by item index; popular items the user has not bought fill the list. On
    repurchase-heavy logs this is a strong baseline that collaborative filtering alone does
    not beat.
    """

    def __init__(self, history: UserHistory, popularity: PopularityModel) -> None:
        self.history = history
        self.popularity = popularity

    def rank(self, user: int, n: int) -> np.ndarray:
        """The top-n item indices for a user index (-1 or unknown: popular only)."""
        mine = np.zeros(0, dtype=np.int64)
        if 0 <= user < self.history.n_users:
            items, events, times = self.history.of(user)
            bought = events == EventType.PURCHASE
            if bought.any():
                items, times = items[bought].astype(np.int64), times[bought]
                unique, inverse, counts = np.unique(items, return_inverse=True, return_counts=True)
                last = np.zeros(len(unique), dtype=np.int64)
                np.maximum.at(last, inverse, times)
                mine = unique[np.lexsort((unique, -last, -counts))][:n]
        if len(mine) >= n:
            return mine
        fill, _ = self.popularity.top(n - len(mine), exclude=mine)
        return np.concatenate([mine, fill.astype(np.int64)])
