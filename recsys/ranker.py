"""The learned ranking stage: every part's candidates re-ranked by a LightGBM LambdaRank model.

The blend proposes candidates from every part (repurchase, buy again, reminders, neighbours,
co-purchase, ALS, visit, popularity); `features` describes each candidate by what each part
gave it and by facts of the item, the user and the pair (times bought, days since, cycle, last
event on it, category share, price against the user's usual, popularity, trend, tier); the
ranker orders them. The model is saved in LightGBM's own text format (never a pickle), with the
feature names it was trained on, which serving checks before using it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys.blend import SLOTS, Candidates
from recsys.config import RankerConfig
from recsys.errors import ModelDirError, NotFittedError
from recsys.history import UserHistory
from recsys.schema import EventType

_DAY = 86_400.0
# Facts beyond the parts' scores, in column order after SLOTS.
FACTS: tuple[str, ...] = (
    "popularity_rank",
    "trend",
    "price",
    "price_vs_usual",
    "item_age_days",
    "category_share",
    "times_bought",
    "days_since_bought",
    "days_since_touched",
    "last_event",
    "views",
    "cycle_days",
    "due_ratio",
    "known",
    "history_events",
    "purchases",
    "days_since_active",
    "tier",
    "visit_items",
)
FEATURES: tuple[str, ...] = tuple(f"part_{name}" for name in SLOTS) + FACTS
# Each fact's column in a feature row.
_COLUMN = {name: len(SLOTS) + position for position, name in enumerate(FACTS)}
_PURCHASE, _VIEW = int(EventType.PURCHASE), int(EventType.VIEW)
# What the pair facts read of a long history: its most recent events (a heavy user's
# thousands of events must not make the tail of serving's latency).
HISTORY_TAIL = 500


@dataclass(frozen=True)
class ItemFacts:
    """Per item index: what the features say of an item, computed once per model."""

    popularity_rank: np.ndarray  # log1p of the popularity rank (0: most popular)
    trend: np.ndarray  # trending score scaled to a maximum of 1 (0: not trending)
    price: np.ndarray  # NaN: unknown
    first_seen: np.ndarray  # Unix seconds
    category: np.ndarray  # code, -1: none
    # Derived: the item-only columns side by side as FACTS has them (one gather per call, not
    # one per column), and category codes shifted by one (0: none) for one bincount per call.
    item_block: np.ndarray = field(init=False, repr=False)
    category_slot: np.ndarray = field(init=False, repr=False)
    category_slots: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        block = np.column_stack(
            [self.popularity_rank, self.trend, np.log1p(np.maximum(self.price, 0))]
        ).astype(np.float32)
        slot = np.maximum(self.category, -1) + 1
        object.__setattr__(self, "item_block", block)
        object.__setattr__(self, "category_slot", slot)
        object.__setattr__(self, "category_slots", int(slot.max(initial=0)) + 1)

    @classmethod
    def of(
        cls,
        rank: np.ndarray,
        trending: np.ndarray,
        trending_scores: np.ndarray,
        price: np.ndarray,
        first_seen: np.ndarray,
        category: np.ndarray,
    ) -> ItemFacts:
        """Build the facts from the popularity model's arrays and the item attributes."""
        trend = np.zeros(len(rank), dtype=np.float64)
        if len(trending) and float(np.max(trending_scores)) > 0:
            trend[np.asarray(trending, dtype=np.int64)] = trending_scores / np.max(trending_scores)
        return cls(
            popularity_rank=np.log1p(np.asarray(rank, dtype=np.float64)),
            trend=trend,
            price=np.asarray(price, dtype=np.float64),
            first_seen=np.asarray(first_seen, dtype=np.int64),
            category=np.asarray(category, dtype=np.int64),
        )


# Columns written together (FACTS keeps each group side by side).
_ITEM_BLOCK = _COLUMN["popularity_rank"]  # popularity_rank, trend, price
_USER_BLOCK = _COLUMN["known"]  # known, history_events, purchases, days_since_active, tier, ...
assert FACTS[_ITEM_BLOCK - len(SLOTS) : _ITEM_BLOCK - len(SLOTS) + 3] == (
    "popularity_rank", "trend", "price",
)  # fmt: skip
assert FACTS[_USER_BLOCK - len(SLOTS) :] == (
    "known", "history_events", "purchases", "days_since_active", "tier", "visit_items",
)  # fmt: skip


def features(
    candidates: Candidates,
    history: UserHistory,
    facts: ItemFacts,
    user: int,
    tier: int,
    now: int,
    visit_items: int,
) -> np.ndarray:
    """The feature rows (candidates x FEATURES, float32) of one visitor's candidates."""
    items = np.asarray(candidates.items, dtype=np.int64)
    n = len(items)
    out = np.full((n, len(FEATURES)), np.nan, dtype=np.float32)
    if n == 0:
        return out
    # (A call costs a few dozen numpy operations on rows this few: each saved one counts.)
    out[:, : len(SLOTS)] = candidates.parts
    column = _COLUMN
    out[:, _ITEM_BLOCK : _ITEM_BLOCK + 3] = facts.item_block[items]
    out[:, column["item_age_days"]] = (now - facts.first_seen[items]) / _DAY
    known = 0 <= user < history.n_users
    h_items, h_events, h_times = history.of(user) if known else (np.zeros(0, np.int32),) * 3
    n_events = len(h_items)
    if n_events > HISTORY_TAIL:
        h_items, h_events, h_times = (
            h_items[-HISTORY_TAIL:],
            h_events[-HISTORY_TAIL:],
            h_times[-HISTORY_TAIL:],
        )
    bought = h_events == _PURCHASE
    purchases = int(np.count_nonzero(bought))
    out[:, _USER_BLOCK:] = (
        float(known),
        np.log1p(n_events),
        purchases,
        (now - h_times[-1]) / _DAY if len(h_times) else np.nan,
        tier,
        visit_items,
    )
    if len(h_items) == 0:
        out[:, column["times_bought"]] = 0
        out[:, column["views"]] = 0
        out[:, column["category_share"]] = 0
        out[:, column["last_event"]] = -1
    else:
        # Each history event's row among the (sorted) candidates, where it is one.
        where = np.searchsorted(items, h_items)
        np.minimum(where, n - 1, out=where)
        hit = items[where] == h_items
        rows, events, times = where[hit], h_events[hit], h_times[hit]
        buys = events == _PURCHASE
        out[:, column["times_bought"]] = np.bincount(rows[buys], minlength=n)
        out[:, column["views"]] = np.bincount(rows[events == _VIEW], minlength=n)
        last_buy = np.full(n, -1, dtype=np.int64)
        np.maximum.at(last_buy, rows[buys], times[buys])
        last_touch = np.full(n, -1, dtype=np.int64)
        np.maximum.at(last_touch, rows, times)
        out[:, column["days_since_bought"]] = np.where(
            last_buy >= 0, (now - last_buy) / _DAY, np.nan
        )
        out[:, column["days_since_touched"]] = np.where(
            last_touch >= 0, (now - last_touch) / _DAY, np.nan
        )
        # Histories are oldest first: the last write per row is its latest event.
        last_event = np.full(n, -1, dtype=np.int64)
        last_event[rows] = events
        out[:, column["last_event"]] = last_event
        slot = facts.category_slot
        counts = np.bincount(slot[h_items], minlength=facts.category_slots)
        counts[0] = 0  # no category: no share
        out[:, column["category_share"]] = counts[slot[items]] / len(h_items)
        if purchases:
            prices = facts.price[h_items[bought]]
            # np.nanmedian's warnings machinery costs more than the median of a few prices.
            known_prices = prices[~np.isnan(prices)]
            usual = float(np.median(known_prices)) if np.isfinite(prices).any() else np.nan
            if usual > 0:
                price = facts.price[items]
                out[:, column["price_vs_usual"]] = np.log(np.maximum(price, 1e-9) / usual)
    due = candidates.due
    if due is not None and len(due):
        where = np.searchsorted(items, due.items)
        where = np.minimum(where, n - 1)
        found = items[where] == due.items
        rows = where[found]
        cycles = np.asarray(due.cycle_days, dtype=np.float64)[found]
        since = np.asarray(due.days_since, dtype=np.float64)[found]
        out[rows, column["cycle_days"]] = cycles
        with np.errstate(divide="ignore", invalid="ignore"):
            out[rows, column["due_ratio"]] = np.where(cycles > 0, since / cycles, np.nan)
    return out


class LearnedRanker:
    """A LightGBM LambdaRank model over FEATURES: `fit` on labelled candidate lists, `predict`
    one visitor's candidates; saved as LightGBM's text model."""

    def __init__(self, config: RankerConfig | None = None, seed: int = 0) -> None:
        self.config = config or RankerConfig()
        self.seed = seed
        self.booster_: Any = None
        self.best_iteration_: int = 0
        # (booster, its direct predict function or None): made at load, or on the first
        # predict after fit().
        self._direct: tuple[Any, Any] | None = None
        self._split_points: dict[tuple[str, ...], np.ndarray | None] = {}

    def fit(
        self,
        x: np.ndarray,
        labels: np.ndarray,
        groups: np.ndarray,
        valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        threads: int = 0,
    ) -> LearnedRanker:
        """Learn from candidate rows grouped by visitor (`groups`: rows per visitor, in order).

        `valid` (rows, labels, groups) stops the boosting once NDCG@20 there stops improving.
        """
        import lightgbm as lgb

        cfg = self.config
        params = {
            "objective": "lambdarank",
            "metric": "ndcg",
            "eval_at": [20],
            "num_leaves": cfg.leaves,
            "learning_rate": cfg.learning_rate,
            "min_data_in_leaf": cfg.min_data_in_leaf,
            "feature_fraction": 0.9,
            "bagging_fraction": 0.9,
            "bagging_freq": 1,
            "lambdarank_truncation_level": 30,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": threads,
            "verbose": -1,
        }
        train = lgb.Dataset(x, labels, group=groups, feature_name=list(FEATURES))
        sets: list[Any] = []
        callbacks: list[Any] = []
        if valid is not None:
            sets = [lgb.Dataset(valid[0], valid[1], group=valid[2], reference=train)]
            callbacks = [lgb.early_stopping(cfg.patience, verbose=False)]
        booster = lgb.train(
            params, train, num_boost_round=cfg.trees, valid_sets=sets, callbacks=callbacks
        )
        self.best_iteration_ = int(booster.best_iteration or booster.current_iteration())
        # Only the trees that helped are kept: fewer trees, faster answers.
        self.booster_ = lgb.Booster(
            model_str=booster.model_to_string(num_iteration=self.best_iteration_)
        )
        self._split_points = {}
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Scores of candidate rows (higher: better)."""
        if self.booster_ is None:
            raise NotFittedError("LearnedRanker is not fitted yet; call fit() or from_text()")
        if self._direct is None or self._direct[0] is not self.booster_:
            self._direct = (self.booster_, _direct_predict(self.booster_))
        direct = self._direct[1]
        if direct is not None:
            return direct(x)
        scores: np.ndarray = self.booster_.predict(x, num_threads=1)
        return scores

    def split_points(self, names: tuple[str, ...]) -> np.ndarray | None:
        """The sorted thresholds of every split on these features, or None if one of them
        is split as a category (or missing values go by zero): where that is not so, two
        values between the same neighbouring thresholds take every tree down the same path.
        """
        if self.booster_ is None:
            raise NotFittedError("LearnedRanker is not fitted yet; call fit() or from_text()")
        known = self._split_points.get(names, False)
        if known is not False:
            return known  # type: ignore[return-value]
        found = self._find_split_points(names)
        self._split_points[names] = found
        return found

    def _find_split_points(self, names: tuple[str, ...]) -> np.ndarray | None:
        wanted = {FEATURES.index(name) for name in names}
        points: list[float] = []
        features: list[int] = []
        for line in self.booster_.model_to_string().splitlines():
            if line.startswith("split_feature="):
                features = [int(v) for v in line.split("=", 1)[1].split()]
            elif line.startswith("threshold="):
                values = line.split("=", 1)[1].split()
                points += [float(v) for f, v in zip(features, values, strict=True) if f in wanted]
            elif line.startswith("decision_type="):
                kinds = [int(v) for v in line.split("=", 1)[1].split()]
                for f, kind in zip(features, kinds, strict=True):
                    # bit 0: a category split; bits 2-3 == 1: zero counts as missing.
                    if f in wanted and (kind & 1 or (kind >> 2) & 3 == 1):
                        return None
        return np.unique(np.asarray(points, dtype=np.float64))

    @property
    def trees(self) -> int:
        """How many trees the model holds."""
        return int(self.booster_.num_trees()) if self.booster_ is not None else 0

    def to_text(self) -> str:
        """The model in LightGBM's own text format."""
        if self.booster_ is None:
            raise NotFittedError("LearnedRanker is not fitted yet; call fit() first")
        text: str = self.booster_.model_to_string()
        return text

    @classmethod
    def from_text(cls, text: str, where: str = "ranker.txt") -> LearnedRanker:
        """Load a model saved by to_text(); ModelDirError if it is not one over FEATURES."""
        import lightgbm as lgb

        try:
            booster = lgb.Booster(model_str=text)
        except lgb.basic.LightGBMError as exc:
            raise ModelDirError(
                f"{where}: not a LightGBM model ({exc}); run `recsys train` again"
            ) from None
        names = tuple(booster.feature_name())
        if names != FEATURES:
            raise ModelDirError(
                f"{where}: the ranker was trained on other features ({len(names)}, this engine "
                f"has {len(FEATURES)}); it was written by another version of recsys: run "
                "`recsys train` again"
            )
        ranker = cls()
        ranker.booster_ = booster
        ranker.best_iteration_ = int(booster.current_iteration())
        # Made at load, so that a page view never pays for it.
        ranker._direct = (booster, _direct_predict(booster))
        return ranker


def _direct_predict(booster: Any) -> Any:
    """A predict function calling LightGBM's C API directly, or None where it cannot.

    Booster.predict spends more of a page view's call in Python (a predictor object and a
    deep copy of its parameters per call) than LightGBM spends on 60 rows; the C function is
    the same, so are the scores: checked once on sample rows, else Booster.predict serves.
    """
    import ctypes

    try:
        from lightgbm.basic import _LIB
    except ImportError:  # pragma: no cover - a LightGBM without its C library handle
        return None
    handle = booster._handle
    columns = int(booster.num_feature())
    parameters = ctypes.c_char_p(b"num_threads=1")
    f64 = ctypes.POINTER(ctypes.c_double)

    def predict(x: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(x, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != columns:
            raise ValueError(f"ranker: rows of {columns} features expected, got {rows.shape}")
        out = np.empty(len(rows), dtype=np.float64)
        if len(rows) == 0:
            return out
        written = ctypes.c_int64(0)
        status = _LIB.LGBM_BoosterPredictForMat(
            handle,
            rows.ctypes.data_as(ctypes.c_void_p),
            ctypes.c_int(0),  # C_API_DTYPE_FLOAT32
            ctypes.c_int32(rows.shape[0]),
            ctypes.c_int32(columns),
            ctypes.c_int(1),  # row major
            ctypes.c_int(0),  # C_API_PREDICT_NORMAL
            ctypes.c_int(0),  # from the first iteration
            ctypes.c_int(-1),  # to the last
            parameters,
            ctypes.byref(written),
            out.ctypes.data_as(f64),
        )
        if status != 0 or written.value != len(rows):
            raise RuntimeError(f"LightGBM predict failed: {_LIB.LGBM_GetLastError().decode()}")
        return out

    sample = np.random.default_rng(0).normal(size=(64, columns)).astype(np.float32)
    sample[::3, ::2] = np.nan
    try:
        same = np.array_equal(predict(sample), booster.predict(sample, num_threads=1))
    except Exception:  # any failure: the library's own predict serves
        return None
    return predict if same else None
