"""Popular items per user segment (region, age band, ...), for visitors known only by attributes."""

from __future__ import annotations

import numpy as np

from recsys.config import PopularityConfig
from recsys.models.base import FitData, Model, take_ranked
from recsys.schema import EVENT_TYPES, EventType


class SegmentPopularity(Model):
    """Each segment's most popular items: distinct users of the segment, weighted by event type.

    `segment_indptr_` (n_segments + 1) and `segment_items_` / `segment_scores_` hold each
    segment's list, best first, at most `per_category` items (the popularity list length).
    """

    name = "segments"
    learned = ("segment_indptr_", "segment_items_", "segment_scores_")

    def __init__(self, config: PopularityConfig | None = None) -> None:
        self.config = config or PopularityConfig()

    def fit(self, data: FitData) -> SegmentPopularity:
        """Count each segment's users per item and keep every segment's top items."""
        n_segments = data.n_segments
        h = data.history
        segments = data.user_segment
        if segments is None or n_segments == 0:
            self.segment_indptr_ = np.zeros(n_segments + 1, dtype=np.int64)
            self.segment_items_ = np.zeros(0, dtype=np.int32)
            self.segment_scores_ = np.zeros(0, dtype=np.float32)
            return self
        weights = np.zeros(len(EventType))
        for name, weight in self.config.weights.items():
            weights[EVENT_TYPES.index(name)] = weight
        users = np.repeat(np.arange(h.n_users, dtype=np.int64), np.diff(h.indptr))
        seg = segments[users]
        keep = (seg >= 0) & (weights[h.events] > 0)
        # One vote per (user, item, event type): a visitor who reloads a page counts once.
        key = np.unique(
            (users[keep] * data.n_items + h.items[keep]) * len(EventType) + h.events[keep]
        )
        event = key % len(EventType)
        pair = key // len(EventType)
        item = pair % data.n_items
        user = pair // data.n_items
        cell = segments[user].astype(np.int64) * data.n_items + item
        cells, inverse = np.unique(cell, return_inverse=True)
        score = np.bincount(inverse, weights=weights[event])
        seg_of, item_of = cells // data.n_items, cells % data.n_items
        order = np.lexsort((item_of, -score, seg_of))
        seg_of, item_of, score = seg_of[order], item_of[order], score[order]
        counts = np.bincount(seg_of, minlength=n_segments)
        rank = np.arange(len(seg_of)) - np.repeat(np.cumsum(counts) - counts, counts)
        top = rank < self.config.per_category
        self.segment_indptr_ = np.r_[0, np.cumsum(np.bincount(seg_of[top], minlength=n_segments))]
        self.segment_items_ = item_of[top].astype(np.int32)
        self.segment_scores_ = score[top].astype(np.float32)
        return self

    def top(
        self, segment: int, n: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (items, scores) of a segment's n most popular items; empty if unknown."""
        self.check_fitted()
        if not 0 <= segment < len(self.segment_indptr_) - 1:
            return self.segment_items_[:0], self.segment_scores_[:0]
        lo, hi = self.segment_indptr_[segment], self.segment_indptr_[segment + 1]
        return take_ranked(self.segment_items_[lo:hi], self.segment_scores_[lo:hi], n, exclude)
