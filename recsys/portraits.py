"""User portraits: recency, frequency, spend, RFM scores, tier, stage and preferences per user.

Rules (vectorised over the whole log; days count back from `now`, the end of the data):

- Orders. A user's PURCHASE events with the same basket id are one order; purchases without a
  basket id form one order per calendar day (UTC). An order's time is its first purchase.
- Recency: days since the last order. Frequency: number of orders. Monetary: the sum of
  price x quantity over purchases, minus returns (never below 0); when the catalogue has no
  prices at all, the number of items bought instead.
- RFM scores, 1..q among customers (users with an order): a user's score is 1 + the number
  of whole q-ths of customers strictly below them, so equal values share a score; recency
  counts fewer days as better.
- Tier, the first rule that holds: no order -> `browser`; one order within `new_days` ->
  `new`; quiet for more than `churned_days` -> `churned`; M score >= `high_value_score` and
  quiet for more than `lapsing_days` -> `potential` (high value, lapsing); quiet for more
  than `at_risk_days` -> `at_risk`; M score >= `high_value_score` -> `high_value`; else
  `active`.
- Stage: `prospect` (no order), `first_purchase` (one), `repeat` (two or more), `lapsed` (a
  customer quiet for more than `at_risk_days`).
- Favourite categories: the categories of the user's purchases (of all their events for
  browsers), most frequent first, with their shares. Price: the median price of what they
  bought, and its band among the catalogue's prices (thirds: low, mid, high).
- Typical interval: the median of the days between consecutive orders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.config import TIERS, PortraitsConfig
from recsys.grouped import grouped_median
from recsys.history import UserHistory
from recsys.models.base import FitData
from recsys.schema import EventType

_DAY = 86_400
STAGES = ("prospect", "first_purchase", "repeat", "lapsed")
PRICE_BANDS = ("low", "mid", "high")


@dataclass(frozen=True)
class Portraits:
    """One row per user (in the user id map's order), as a DataFrame of plain columns.

    `tier_codes` (index into TIERS) and `category_codes` (users x top_categories, -1: none)
    are what serving needs of it, as arrays.
    """

    frame: pd.DataFrame
    tier_codes: np.ndarray
    category_codes: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        """Serving's arrays, for saving without pickle."""
        return {"tier": self.tier_codes, "categories": self.category_codes.astype(np.int32)}

    def summary(self) -> pd.DataFrame:
        """Users, share, revenue share and mean recency/frequency per tier."""
        frame = self.frame
        revenue = frame["monetary"].sum()
        grouped = frame.groupby("tier", observed=False)
        table = pd.DataFrame(
            {
                "users": grouped.size(),
                "share": grouped.size() / max(len(frame), 1),
                "revenue_share": grouped["monetary"].sum() / revenue if revenue > 0 else 0.0,
                "mean_recency_days": grouped["recency_days"].mean(),
                "mean_frequency": grouped["frequency"].mean(),
            }
        )
        return table.reindex(list(TIERS)).fillna({"users": 0, "share": 0.0, "revenue_share": 0.0})

    def format_summary(self) -> str:
        """The tier summary as a text table."""
        table = self.summary()
        lines = [
            "portraits by tier",
            f"  {'tier':<11}{'users':>9}{'share':>8}{'revenue':>9}{'recency d':>11}{'orders':>8}",
        ]
        for tier, row in table.iterrows():
            recency, orders = row["mean_recency_days"], row["mean_frequency"]
            lines.append(
                f"  {tier!s:<11}{int(row['users']):>9,}{row['share']:>8.1%}"
                f"{row['revenue_share']:>9.1%}"
                + (f"{recency:>11.1f}" if pd.notna(recency) else f"{'-':>11}")
                + (f"{orders:>8.2f}" if pd.notna(orders) else f"{'-':>8}")
            )
        return "\n".join(lines)


def portraits_of(
    data: FitData, config: PortraitsConfig | None = None, now: int | None = None
) -> Portraits:
    """build_portraits over fitted data (at the data's end, or at `now`)."""
    category_ids = data.extra.get("category_ids")
    return build_portraits(
        data.history,
        data.item_category,
        data.item_price,
        data.now if now is None else now,
        config,
        np.asarray(list(category_ids), dtype=object) if category_ids is not None else None,
    )


def build_portraits(
    history: UserHistory,
    item_category: np.ndarray,
    item_price: np.ndarray,
    now: int,
    config: PortraitsConfig | None = None,
    category_ids: np.ndarray | None = None,
) -> Portraits:
    """Compute every user's portrait from their history (see the module's rules)."""
    cfg = config or PortraitsConfig()
    n_users = history.n_users
    lengths = np.diff(history.indptr)
    owner = np.arange(n_users).repeat(lengths)
    events, items, times = history.events, history.items.astype(np.int64), history.timestamps
    buy = events == EventType.PURCHASE
    returned = events == EventType.RETURN

    # Orders: (user, basket) or (user, day) for purchases without a basket.
    basket = history.baskets[buy]
    order_key = np.where(basket >= 0, basket, -1 - times[buy] // _DAY)
    frame = pd.DataFrame({"user": owner[buy], "order": order_key, "time": times[buy]})
    orders = frame.groupby(["user", "order"], sort=False)["time"].min().reset_index()
    orders = orders.sort_values(["user", "time"], kind="stable")
    order_user = orders["user"].to_numpy()
    order_time = orders["time"].to_numpy()
    frequency = np.bincount(order_user, minlength=n_users)
    customer = frequency > 0
    last_order = np.full(n_users, -1, dtype=np.int64)
    first_order = np.full(n_users, -1, dtype=np.int64)
    if len(order_user):
        np.maximum.at(last_order, order_user, order_time)
        first_order[order_user[::-1]] = order_time[::-1]  # the earliest order wins
    recency = np.where(customer, (now - last_order) / _DAY, np.nan)

    # Typical interval between consecutive orders.
    same_user = order_user[1:] == order_user[:-1]
    gaps = (np.diff(order_time) / _DAY)[same_user]
    interval = _median_by(order_user[1:][same_user], gaps, n_users)

    # Spend: price x quantity, returns netted; counts when there are no prices.
    price = np.asarray(item_price, dtype=np.float64)
    quantity = np.abs(history.quantities.astype(np.float64))
    priced = np.isfinite(price).any()
    if priced:
        value = np.nan_to_num(price[items] * quantity)
        spent = np.bincount(owner[buy], weights=value[buy], minlength=n_users)
        back = np.bincount(owner[returned], weights=value[returned], minlength=n_users)
        monetary = np.maximum(spent - back, 0.0)
    else:
        monetary = np.bincount(owner[buy], weights=quantity[buy], minlength=n_users)

    r_score = _scores(-np.nan_to_num(recency, nan=np.inf), customer, cfg.quantiles)
    f_score = _scores(frequency.astype(np.float64), customer, cfg.quantiles)
    m_score = _scores(monetary, customer, cfg.quantiles)
    tier, stage = _tiers(customer, frequency, recency, m_score, cfg)

    # Favourite categories: of purchases for customers, of every event for browsers.
    counted = buy | ~customer[owner]
    categories = np.asarray(item_category, dtype=np.int64)[items[counted]]
    known = categories >= 0
    top, shares = _top_categories(owner[counted][known], categories[known], n_users, cfg)
    if category_ids is None:
        category_ids = np.arange(int(categories.max(initial=0)) + 1)

    median_price = _median_by(owner[buy], price[items[buy]], n_users)
    band = _price_bands(median_price, price)
    last_activity = np.full(n_users, -1, dtype=np.int64)
    nonempty = lengths > 0
    last_activity[nonempty] = times[history.indptr[1:][nonempty] - 1]

    columns: dict[str, object] = {
        "recency_days": recency,
        "frequency": frequency.astype(np.int32),
        "monetary": monetary,
        "r_score": r_score,
        "f_score": f_score,
        "m_score": m_score,
        "rfm": _rfm_text(r_score, f_score, m_score),
        "tier": np.asarray(TIERS, dtype=object)[tier],
        "stage": np.asarray(STAGES, dtype=object)[stage],
    }
    for rank in range(cfg.top_categories):
        codes = top[:, rank]
        columns[f"category_{rank + 1}"] = np.array(
            [category_ids[c] if c >= 0 else None for c in codes.tolist()], dtype=object
        )
        columns[f"category_{rank + 1}_share"] = shares[:, rank]
    columns |= {
        "median_price": median_price,
        "price_band": np.where(band >= 0, np.asarray(PRICE_BANDS, dtype=object)[band], None),
        "interval_days": interval,
        "first_order": first_order,
        "last_order": last_order,
        "last_activity": last_activity,
    }
    return Portraits(pd.DataFrame(columns), tier, top.astype(np.int32))


def _scores(values: np.ndarray, among: np.ndarray, q: int) -> np.ndarray:
    """1..q: one plus the whole q-ths of `among` strictly below each value (0 outside)."""
    out = np.zeros(len(values), dtype=np.int8)
    pool = np.sort(values[among])
    if len(pool) == 0:
        return out
    below = np.searchsorted(pool, values[among], side="left")
    out[among] = np.minimum(1 + (below * q) // len(pool), q).astype(np.int8)
    return out


def _tiers(
    customer: np.ndarray,
    frequency: np.ndarray,
    recency: np.ndarray,
    m_score: np.ndarray,
    cfg: PortraitsConfig,
) -> tuple[np.ndarray, np.ndarray]:
    quiet = np.nan_to_num(recency, nan=0.0)
    high = m_score >= cfg.high_value_score
    rules = [
        (~customer, "browser"),
        ((frequency == 1) & (quiet <= cfg.new_days), "new"),
        (quiet > cfg.churned_days, "churned"),
        (high & (quiet > cfg.lapsing_days), "potential"),
        (quiet > cfg.at_risk_days, "at_risk"),
        (high, "high_value"),
    ]
    tier = np.full(len(customer), TIERS.index("active"), dtype=np.int8)
    decided = np.zeros(len(customer), dtype=bool)
    for holds, name in rules:
        take = holds & ~decided
        tier[take] = TIERS.index(name)
        decided |= take
    stage = np.where(frequency >= 2, STAGES.index("repeat"), STAGES.index("first_purchase"))
    stage = np.where(customer & (quiet > cfg.at_risk_days), STAGES.index("lapsed"), stage)
    stage = np.where(customer, stage, STAGES.index("prospect")).astype(np.int8)
    return tier, stage


def _top_categories(
    users: np.ndarray, categories: np.ndarray, n_users: int, cfg: PortraitsConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The k most frequent categories per user (ties: lower code), and their shares."""
    k = cfg.top_categories
    top = np.full((n_users, k), -1, dtype=np.int64)
    shares = np.zeros((n_users, k), dtype=np.float32)
    if len(users) == 0:
        return top, shares
    span = int(categories.max()) + 1
    pairs, counts = np.unique(users * span + categories, return_counts=True)
    owner, category = pairs // span, pairs % span
    order = np.lexsort((category, -counts, owner))
    owner, category, counts = owner[order], category[order], counts[order]
    totals = np.bincount(users, minlength=n_users)
    first = np.searchsorted(owner, owner, side="left")
    rank = np.arange(len(owner)) - first
    keep = rank < k
    top[owner[keep], rank[keep]] = category[keep]
    shares[owner[keep], rank[keep]] = counts[keep] / totals[owner[keep]]
    return top, shares


def _median_by(groups: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Median of the finite values per group; NaN for groups without any."""
    finite = np.isfinite(values)
    return grouped_median(groups[finite], values[finite], n_groups)[0]


def _price_bands(median_price: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """-1 (unknown), or 0/1/2 for the catalogue's lower, middle and upper third of prices."""
    band = np.full(len(median_price), -1, dtype=np.int8)
    known = prices[np.isfinite(prices)]
    if len(known) == 0:
        return band
    cuts = np.quantile(known, [1 / 3, 2 / 3])
    has = np.isfinite(median_price)
    band[has] = np.searchsorted(cuts, median_price[has], side="right").astype(np.int8)
    return band


def _rfm_text(r: np.ndarray, f: np.ndarray, m: np.ndarray) -> np.ndarray:
    """'545'-style codes, '' for users without an order."""
    codes = r.astype(np.int64) * 100 + f.astype(np.int64) * 10 + m.astype(np.int64)
    text = codes.astype(str).astype(object)
    text[r == 0] = ""
    return text
