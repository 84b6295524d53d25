"""Repurchase cycles: which bought items a customer is due to buy again, and which nobody rebuys.

Rules (all learned in `fit`, vectorised over the whole log):

- Occasions. A user's PURCHASE events of one item form occasions: a purchase less than
  `min_interval_days` after the previous purchase of the same item by the same user (or in the
  same second, so a zero setting never yields zero-day cycles) joins that purchase's occasion;
  chains of such purchases stay one occasion (split deliveries, invoice corrections). An
  occasion's time is its first purchase (the order), its quantity the sum of its purchases.
- Returns. Each RETURN is matched to the latest occasion of the same (user, item) starting at or
  before it. An occasion is cancelled when the quantity returned against it reaches the quantity
  bought in it; partial returns cancel nothing, returns with no earlier occasion are ignored.
  Cancelled occasions are dropped before anything else is counted.
- Cycles. Intervals are the days between a user's consecutive occasions of an item. An item's
  cycle is the median of all its intervals when there are at least `min_intervals` of them, else
  its category's cycle (the median of the intervals of every item in the category, with the same
  minimum), else unknown (NaN).
- One-off. An item bought by at least `one_off_min_buyers` users of whom fewer than
  `one_off_rate` bought it on two or more occasions is one-off (a fridge).
- Rebuyable. `rebuyable_` answers "may this item be recommended again to someone who bought it":
  it is not one-off and its cycle (item or category level) is known. An item nobody has been seen
  rebuying often enough to learn a cycle is not rebuyable: re-recommending it is a guess.
- Due. A user's expected cycle for an item is their own median interval when they have at least
  two intervals of it (their own rhythm beats the crowd's), else the item's cycle. Items that are
  one-off or have no expected cycle are never due. With ratio = days since the last occasion /
  expected cycle, an item is due when `due_from <= ratio <= due_until`, and scores
  exp(-(ln ratio)^2 / (2 * 0.5^2)): 1 exactly on schedule, symmetric in log time so that buying
  twice as late weighs like half as late, about 0.90 at 0.8 cycles and 0.09 at 3 cycles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.config import RepurchaseConfig
from recsys.grouped import grouped_median
from recsys.models.base import FitData, Model
from recsys.schema import EventType

_SECONDS_PER_DAY = 86_400.0
# Spread of the score in log-ratio units: half a log-unit away from schedule keeps ~0.61.
_SCORE_SIGMA = 0.5
_SCORE_FACTOR = -1.0 / (2 * _SCORE_SIGMA**2)


@dataclass(frozen=True, eq=False)
class Due:
    """A user's due items, best first, with what serving needs to explain each one."""

    items: np.ndarray  # int32 item indices
    scores: np.ndarray  # float32 in (0, 1], 1 when exactly one cycle has passed
    cycle_days: np.ndarray  # float32 expected days between purchases
    days_since: np.ndarray  # float32 days since the last purchase occasion

    @classmethod
    def empty(cls) -> Due:
        """Return a Due with no items."""
        return _NOTHING_DUE

    def __len__(self) -> int:
        return len(self.items)


_NOTHING_DUE = Due(
    items=np.empty(0, dtype=np.int32),
    scores=np.empty(0, dtype=np.float32),
    cycle_days=np.empty(0, dtype=np.float32),
    days_since=np.empty(0, dtype=np.float32),
)


class RepurchaseModel(Model):
    """Learns repurchase cycles per item, category and (user, item); says which items are due."""

    name = "repurchase"
    learned = (
        "item_cycle_days_",
        "item_intervals_",
        "item_buyers_",
        "item_repeat_rate_",
        "one_off_",
        "rebuyable_",
        "category_cycle_days_",
        "pairs_indptr_",
        "pairs_item_",
        "pairs_last_",
        "pairs_occasions_",
        "pairs_user_cycle_days_",
    )

    # Learned state, declared for type checkers; set by fit() or load_arrays().
    item_cycle_days_: np.ndarray  # float32 per item: own cycle, else category's, else NaN
    item_intervals_: np.ndarray  # int32 per item: observed repeat intervals (own cycle if enough)
    item_buyers_: np.ndarray  # int32 per item: users with at least one kept occasion
    item_repeat_rate_: np.ndarray  # float32 per item: share of buyers with >= 2 occasions; NaN
    one_off_: np.ndarray  # bool per item
    rebuyable_: np.ndarray  # bool per item: not one-off and a cycle is known
    category_cycle_days_: np.ndarray  # float32 per category, NaN when unknown
    pairs_indptr_: np.ndarray  # int64, n_users + 1: user u's pairs are [indptr[u], indptr[u+1])
    pairs_item_: np.ndarray  # int32 item of each (user, item) pair, ascending within a user
    pairs_last_: np.ndarray  # int64 Unix seconds of the pair's last occasion
    pairs_occasions_: np.ndarray  # int32 kept occasions of the pair
    pairs_user_cycle_days_: np.ndarray  # float32 user's median interval, NaN with no interval

    def __init__(self, config: RepurchaseConfig | None = None) -> None:
        self.config = config or RepurchaseConfig()

    def fit(self, data: FitData) -> RepurchaseModel:
        """Learn occasions, cycles, one-off items and every user's bought items from data."""
        n_users, n_items, n_categories = data.n_users, data.n_items, data.n_categories
        _check_shapes(data)
        occ_pair, occ_time = self._occasions(data)

        # Occasions are sorted by (pair, time): runs of one pair are its occasions in order.
        first = np.r_[True, occ_pair[1:] != occ_pair[:-1]] if len(occ_pair) else np.zeros(0, bool)
        starts = np.flatnonzero(first)
        counts = np.diff(np.r_[starts, len(occ_pair)])
        pair = occ_pair[starts]
        last = occ_time[starts + counts - 1]
        pair_user = pair // max(n_items, 1)
        pair_item = pair % max(n_items, 1)

        # An interval ends at every occasion that is not its pair's first.
        later = np.flatnonzero(~first)
        days = (occ_time[later] - occ_time[later - 1]) / _SECONDS_PER_DAY
        interval_pair = np.cumsum(first)[later] - 1
        interval_item = pair_item[interval_pair]

        user_cycle, _ = grouped_median(interval_pair, days, len(pair))
        item_median, item_intervals = grouped_median(interval_item, days, n_items)
        category = data.item_category.astype(np.int64)
        interval_category = category[interval_item]
        known = interval_category >= 0
        category_median, category_intervals = grouped_median(
            interval_category[known], days[known], n_categories
        )
        category_cycle = np.where(
            category_intervals >= self.config.min_intervals, category_median, np.nan
        )
        fallback = np.full(n_items, np.nan)
        has_category = category >= 0
        fallback[has_category] = category_cycle[category[has_category]]
        item_cycle = np.where(item_intervals >= self.config.min_intervals, item_median, fallback)

        buyers = np.bincount(pair_item, minlength=n_items)
        repeaters = np.bincount(pair_item[counts >= 2], minlength=n_items)
        with np.errstate(invalid="ignore", divide="ignore"):
            repeat_rate = np.where(buyers > 0, repeaters / buyers, np.nan)
        one_off = (buyers >= self.config.one_off_min_buyers) & (
            repeat_rate < self.config.one_off_rate
        )

        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(pair_user, minlength=n_users), out=indptr[1:])

        self.item_cycle_days_ = item_cycle.astype(np.float32)
        self.item_intervals_ = item_intervals.astype(np.int32)
        self.item_buyers_ = buyers.astype(np.int32)
        self.item_repeat_rate_ = repeat_rate.astype(np.float32)
        self.one_off_ = one_off
        self.rebuyable_ = ~one_off & np.isfinite(item_cycle)
        self.category_cycle_days_ = category_cycle.astype(np.float32)
        self.pairs_indptr_ = indptr
        self.pairs_item_ = pair_item.astype(np.int32)
        self.pairs_last_ = last.astype(np.int64)
        self.pairs_occasions_ = counts.astype(np.int32)
        self.pairs_user_cycle_days_ = user_cycle.astype(np.float32)
        return self

    def _occasions(self, data: FitData) -> tuple[np.ndarray, np.ndarray]:
        """Return (pair key, time) of every kept purchase occasion, sorted by pair then time."""
        history = data.history
        n_items = max(data.n_items, 1)
        codes = history.events
        rows = np.flatnonzero((codes == EventType.PURCHASE) | (codes == EventType.RETURN))
        # Only purchases and returns need their user: find it from indptr, not for every event.
        user = np.searchsorted(history.indptr, rows, side="right") - 1
        pair = user * n_items + history.items[rows].astype(np.int64)
        # Events are user-major and time-ordered, so a stable sort by pair keeps time order.
        order = np.argsort(pair, kind="stable")
        rows, pair = rows[order], pair[order]
        time = history.timestamps[rows]
        quantity = history.quantities[rows].astype(np.float64)
        is_buy = codes[rows] == EventType.PURCHASE

        buy_pair, buy_time, buy_quantity = pair[is_buy], time[is_buy], quantity[is_buy]
        gap_limit = max(self.config.min_interval_days * _SECONDS_PER_DAY, 1.0)
        new = np.ones(len(buy_pair), dtype=bool)
        new[1:] = (buy_pair[1:] != buy_pair[:-1]) | (np.diff(buy_time) >= gap_limit)
        starts = np.flatnonzero(new)
        occ_pair, occ_time = buy_pair[starts], buy_time[starts]
        occ_quantity = (
            np.add.reduceat(buy_quantity, starts) if len(starts) else np.zeros(0, np.float64)
        )

        ret_pair, ret_time, ret_quantity = pair[~is_buy], time[~is_buy], quantity[~is_buy]
        if len(ret_pair) == 0 or len(occ_pair) == 0:
            return occ_pair, occ_time
        # Merge occasions and returns by (pair, time), occasions first on ties, so the running
        # maximum of occasion indices is each return's latest occasion at or before it.
        n_occ = len(occ_pair)
        kind = np.r_[np.zeros(n_occ, np.int8), np.ones(len(ret_pair), np.int8)]
        merged = np.lexsort((kind, np.r_[occ_time, ret_time], np.r_[occ_pair, ret_pair]))
        latest = np.maximum.accumulate(np.where(merged < n_occ, merged, -1))
        is_ret = merged >= n_occ
        matched = latest[is_ret]
        ret_index = merged[is_ret] - n_occ
        ok = matched >= 0
        ok[ok] = occ_pair[matched[ok]] == ret_pair[ret_index[ok]]
        returned = np.bincount(matched[ok], weights=ret_quantity[ret_index[ok]], minlength=n_occ)
        hit = np.zeros(n_occ, dtype=bool)
        hit[matched[ok]] = True
        keep = ~(hit & (returned >= occ_quantity))
        return occ_pair[keep], occ_time[keep]

    def due(self, user: int, now: int, n: int | None = None) -> Due:
        """Return the user's bought items due at `now` (Unix seconds), best first, at most n."""
        self.check_fitted()
        if not 0 <= user < len(self.pairs_indptr_) - 1:
            return Due.empty()
        lo, hi = self.pairs_indptr_[user], self.pairs_indptr_[user + 1]
        if lo == hi:
            return Due.empty()
        items = self.pairs_item_[lo:hi]
        occasions = self.pairs_occasions_[lo:hi]
        # Three occasions give two intervals: enough for the user's own rhythm to be trusted.
        cycle = np.where(
            occasions >= 3, self.pairs_user_cycle_days_[lo:hi], self.item_cycle_days_[items]
        )
        cycle[self.one_off_[items]] = np.nan
        days = (now - self.pairs_last_[lo:hi]) / _SECONDS_PER_DAY
        ratio = days / cycle
        # NaN cycles (one-off or unknown) give NaN ratios, which fail both comparisons.
        keep = np.flatnonzero((ratio >= self.config.due_from) & (ratio <= self.config.due_until))
        if len(keep) == 0:
            return Due.empty()
        scores = np.exp(_SCORE_FACTOR * np.square(np.log(ratio[keep]))).astype(np.float32)
        # A very wide due_until could underflow to 0; a due item always scores above 0.
        np.maximum(scores, np.finfo(np.float32).smallest_subnormal, out=scores)
        # Best score first; ties go to the item bought on more occasions, then the lower index.
        rank = np.lexsort((items[keep], -occasions[keep], -scores))
        if n is not None:
            rank = rank[: max(n, 0)]
        chosen = keep[rank]
        return Due(
            items=items[chosen],
            scores=scores[rank],
            cycle_days=cycle[chosen].astype(np.float32),
            days_since=days[chosen].astype(np.float32),
        )

    def not_rebought(self, user: int) -> np.ndarray:
        """Return the items the user bought that nobody rebuys (a fridge, not coffee)."""
        self.check_fitted()
        if not 0 <= user < len(self.pairs_indptr_) - 1:
            return np.empty(0, np.int32)
        bought = self.pairs_item_[self.pairs_indptr_[user] : self.pairs_indptr_[user + 1]]
        return bought[~self.rebuyable_[bought]] if len(bought) else bought

    def purchases(self, user: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (items, last occasion time, occasions) of everything the user bought and kept."""
        self.check_fitted()
        if not 0 <= user < len(self.pairs_indptr_) - 1:
            return (np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.int32))
        lo, hi = self.pairs_indptr_[user], self.pairs_indptr_[user + 1]
        return (
            self.pairs_item_[lo:hi].copy(),
            self.pairs_last_[lo:hi].copy(),
            self.pairs_occasions_[lo:hi].copy(),
        )


def _check_shapes(data: FitData) -> None:
    """Raise ValueError when the history or categories do not line up with the matrix."""
    if data.history.n_users != data.n_users:
        raise ValueError(
            f"repurchase: the history has {data.history.n_users} users but the matrix has "
            f"{data.n_users}; build both from the same user id map"
        )
    if len(data.item_category) != data.n_items:
        raise ValueError(
            f"repurchase: item_category has {len(data.item_category)} entries but the matrix has "
            f"{data.n_items} items; align the catalogue to the item id map"
        )
