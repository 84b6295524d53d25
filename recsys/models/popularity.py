"""Popular, best-selling and trending items, over the whole shop and per category."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from recsys.config import PopularityConfig
from recsys.models.base import FitData, Model, take_ranked
from recsys.schema import EVENT_TYPES, EventType

_SECONDS_PER_DAY = 86_400.0
_N_TYPES = len(EventType)


class PopularityModel(Model):
    """Item lists that need no user: popular, bestsellers, trending, popular per category.

    Every count is of distinct users: a user counts once per item and event type, so one
    visitor reloading a page 200 times (or a bot) does not make an item popular.

    - popular: sum over event types of weight[type] x distinct users with that event.
    - bestsellers: distinct buyers (purchase events), whatever the weights say.
    - trending: like popular over the events of the last `trending_window_days` up to `now`
      (an event exactly window days old is in), each (user, item, type) weighted by
      0.5 ** (age_days / half_life) of its newest event there; events after `now` are left out.
    - per category: the popular list split by category, at most `per_category` items each.

    Returns never count (nor cancel purchases here: a returned item was still in demand).
    Lists hold only items with a score > 0, by score desc, ties by lower index. `rank_` is each
    item's position in the popular list; every item with no counted event shares the rank
    len(popular_), one past the last, so popularity-bias metrics see them as least popular.
    """

    name: ClassVar[str] = "popularity"
    learned: ClassVar[tuple[str, ...]] = (
        "popular_",
        "popular_scores_",
        "bestsellers_",
        "bestseller_scores_",
        "trending_",
        "trending_scores_",
        "category_indptr_",
        "category_items_",
        "category_scores_",
        "rank_",
    )

    popular_: np.ndarray
    popular_scores_: np.ndarray
    bestsellers_: np.ndarray
    bestseller_scores_: np.ndarray
    trending_: np.ndarray
    trending_scores_: np.ndarray
    category_indptr_: np.ndarray
    category_items_: np.ndarray
    category_scores_: np.ndarray
    rank_: np.ndarray

    def __init__(self, config: PopularityConfig | None = None) -> None:
        self.config = config or PopularityConfig()

    def fit(self, data: FitData) -> PopularityModel:
        """Count every item's events and build the popular, bestseller and trending lists."""
        n_items = data.n_items
        category = _checked_categories(data)
        history = data.history
        users = np.repeat(np.arange(history.n_users, dtype=np.int64), history.lengths())
        items = history.items.astype(np.int64)
        types = history.events.astype(np.int64)
        weights = _weights(self.config)

        counted = weights[types] > 0
        key = _event_key(users[counted], items[counted], types[counted], n_items)
        # A hash on the key finds each (user, item, type)'s first event without sorting.
        first = ~pd.Series(key).duplicated().to_numpy()
        popular = np.bincount(
            items[counted][first], weights[types[counted][first]], minlength=n_items
        )

        bought = types == EventType.PURCHASE
        buyer_key = users[bought] * max(n_items, 1) + items[bought]
        first_buy = ~pd.Series(buyer_key).duplicated().to_numpy()
        buyers = np.bincount(items[bought][first_buy], minlength=n_items).astype(np.float64)

        window = self.config.trending_window_days * _SECONDS_PER_DAY
        age = data.now - history.timestamps
        recent = counted & (age >= 0) & (age <= window)
        recent_key = _event_key(users[recent], items[recent], types[recent], n_items)
        # History is per user and oldest first, so the last duplicate of a key is its newest event.
        newest = ~pd.Series(recent_key).duplicated(keep="last").to_numpy()
        age_days = age[recent][newest] / _SECONDS_PER_DAY
        decayed = weights[types[recent][newest]] * np.exp2(
            -age_days / self.config.trending_half_life_days
        )
        trending = np.bincount(items[recent][newest], decayed, minlength=n_items)

        self.popular_, self.popular_scores_ = _ranked(popular)
        self.bestsellers_, self.bestseller_scores_ = _ranked(buyers)
        self.trending_, self.trending_scores_ = _ranked(trending)
        self.rank_ = np.full(n_items, len(self.popular_), dtype=np.int32)
        self.rank_[self.popular_] = np.arange(len(self.popular_), dtype=np.int32)
        self._fit_categories(category, data.n_categories)
        return self

    def _fit_categories(self, category: np.ndarray, n_categories: int) -> None:
        # A stable sort by category keeps the popular order inside each category.
        in_category = category[self.popular_] >= 0
        ordered = self.popular_[in_category]
        scores = self.popular_scores_[in_category]
        cats = category[ordered]
        order = np.argsort(cats, kind="stable")
        ordered, scores, cats = ordered[order], scores[order], cats[order]
        counts = np.bincount(cats, minlength=n_categories)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        kept = np.arange(len(ordered)) - starts < self.config.per_category
        self.category_indptr_ = np.zeros(n_categories + 1, dtype=np.int64)
        np.cumsum(np.minimum(counts, self.config.per_category), out=self.category_indptr_[1:])
        self.category_items_ = ordered[kept].astype(np.int32)
        self.category_scores_ = scores[kept].astype(np.float32)

    def top(self, n: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return the n most popular items and their scores, leaving out `exclude`."""
        self.check_fitted()
        return take_ranked(self.popular_, self.popular_scores_, n, exclude)

    def bestsellers(
        self, n: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return the n items with most distinct buyers and their counts, leaving out `exclude`."""
        self.check_fitted()
        return take_ranked(self.bestsellers_, self.bestseller_scores_, n, exclude)

    def trending(self, n: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Return the n most trending items and their scores, leaving out `exclude`."""
        self.check_fitted()
        return take_ranked(self.trending_, self.trending_scores_, n, exclude)

    def top_in_category(
        self, category: int, n: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return a category's n most popular items and scores; an unknown category gives none."""
        self.check_fitted()
        if not 0 <= category < len(self.category_indptr_) - 1:
            return take_ranked(self.category_items_[:0], self.category_scores_[:0], 0, None)
        lo, hi = self.category_indptr_[category], self.category_indptr_[category + 1]
        return take_ranked(self.category_items_[lo:hi], self.category_scores_[lo:hi], n, exclude)


def _weights(config: PopularityConfig) -> np.ndarray:
    """Weight per event type code; unlisted types weigh 0 (the config refused bad weights)."""
    weights = np.zeros(_N_TYPES)
    for name, weight in config.weights.items():
        weights[EVENT_TYPES.index(name)] = weight
    return weights


def _checked_categories(data: FitData) -> np.ndarray:
    """Return item_category as int64, raising if a code lies outside 0..n_categories-1 (or -1)."""
    category = np.asarray(data.item_category, dtype=np.int64)
    if len(category) != data.n_items:
        raise ValueError(
            f"item_category has {len(category)} entries but the matrix has {data.n_items} items"
        )
    bad = (category < -1) | (category >= data.n_categories)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"item_category code {int(category[first])} of item {first} is outside "
            f"0..{data.n_categories - 1} (n_categories = {data.n_categories}); "
            "-1 marks an item without a category"
        )
    return category


def _event_key(users: np.ndarray, items: np.ndarray, types: np.ndarray, n_items: int) -> np.ndarray:
    """One int64 per (user, item, event type)."""
    return (users * max(n_items, 1) + items) * _N_TYPES + types


def _ranked(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Items with a score > 0 by score desc (ties: lower index first), and their float32 scores."""
    # Sort on the stored float32 values, so that equal stored scores appear by index.
    values = scores.astype(np.float32)
    items = np.flatnonzero(values > 0)
    order = np.lexsort((items, -values[items]))
    return items[order].astype(np.int32), values[items[order]]
