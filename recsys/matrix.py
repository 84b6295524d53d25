"""The user x item confidence matrix: weighted, optionally time-decayed, with returns netted out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.config import MatrixConfig
from recsys.ids import IdMap
from recsys.schema import EVENT_TYPES, EventType
from recsys.times import parse_instant

_SECONDS_PER_DAY = 86_400.0
_N_TYPES = len(EventType)


@dataclass
class MatrixSummary:
    """Counts describing how a confidence matrix was built."""

    users: int
    items: int
    nonzeros: int
    events_used: int
    # events whose user or item is not in the id maps (e.g. outside a training split).
    events_unmapped: int
    # (user, item) pairs whose purchases were all returned, with no other interest left.
    pairs_cancelled: int
    # return events with no earlier purchase of the item by the user in the log (ignored).
    returns_unmatched: int
    reference_time: int

    @property
    def density(self) -> float:
        """Share of user x item cells that are non-zero."""
        cells = self.users * self.items
        return self.nonzeros / cells if cells else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-ready data."""
        return dict(self.__dict__) | {"density": self.density}

    def format(self) -> str:
        """Return the summary as one line of text."""
        return (
            f"matrix: {self.users:,} users x {self.items:,} items, {self.nonzeros:,} non-zeros "
            f"(density {self.density:.2e}) from {self.events_used:,} events; "
            f"{self.pairs_cancelled:,} pairs cancelled by returns, "
            f"{self.returns_unmatched:,} unmatched returns, "
            f"{self.events_unmapped:,} unmapped events"
        )


def confidence_matrix(
    events: pd.DataFrame,
    users: IdMap,
    items: IdMap,
    config: MatrixConfig,
    timezone: str = "UTC",
) -> tuple[sp.csr_matrix, MatrixSummary]:
    """Return the users x items float32 CSR confidence matrix of canonical events.

    Each (user, item, type) aggregates its events' decayed weights d by `config.repeats`
    (sum: sum d, once: max d, log1p: log1p(sum d)); purchases are scaled by the share of their
    quantity not returned; the cell is the sum over types of weight[type] x aggregate.
    """
    u = users.index(events["user"].to_numpy())
    i = items.index(events["item"].to_numpy())
    etype = events["event"].to_numpy().astype(np.int64)
    ts = events["timestamp"].to_numpy()
    qty = events["quantity"].to_numpy(dtype=np.float64)
    mapped = (u >= 0) & (i >= 0)
    reference = _reference_time(config, ts, timezone)
    u, i, etype, ts, qty = u[mapped], i[mapped], etype[mapped], ts[mapped], qty[mapped]

    # A return cancels only what was bought before it: one of an item bought before the log
    # began must not cancel a later repurchase (the repurchase model matches returns the same way).
    n_items = max(len(items), 1)
    pair_of = u.astype(np.int64) * n_items + i
    buy, ret = etype == EventType.PURCHASE, etype == EventType.RETURN
    first_buy = pd.Series(ts[buy]).groupby(pair_of[buy]).min()
    since = first_buy.reindex(pair_of[ret]).to_numpy(dtype=np.float64)
    early = np.zeros(len(ts), dtype=bool)
    early[ret] = np.isnan(since) | (ts[ret] < since)
    returns_unmatched = int(early.sum())
    if returns_unmatched:
        keep = ~early
        pair_of, etype, ts, qty = pair_of[keep], etype[keep], ts[keep], qty[keep]

    if config.half_life_days > 0:
        age_days = np.maximum(reference - ts, 0) / _SECONDS_PER_DAY
        decay = np.exp2(-age_days / config.half_life_days)
    else:
        decay = np.ones(len(ts))

    key = pair_of * _N_TYPES + etype
    order = np.argsort(key, kind="stable")
    key_sorted = key[order]
    starts = np.flatnonzero(np.r_[True, key_sorted[1:] != key_sorted[:-1]]) if len(key) else key
    group_key = key_sorted[starts]
    d = decay[order]
    if config.repeats == "once":
        agg = np.maximum.reduceat(d, starts) if len(starts) else d[:0]
    else:
        agg = np.add.reduceat(d, starts) if len(starts) else d[:0]
        if config.repeats == "log1p":
            agg = np.log1p(agg)
    group_qty = np.add.reduceat(qty[order], starts) if len(starts) else qty[:0]
    group_pair = group_key // _N_TYPES
    group_type = group_key % _N_TYPES

    weights = np.zeros(_N_TYPES)
    for name, weight in config.weights.items():
        weights[EVENT_TYPES.index(name)] = weight
    value = agg * weights[group_type]

    # Returns cancel purchases of the same (user, item) in proportion to the quantity returned.
    is_buy = group_type == EventType.PURCHASE
    is_ret = group_type == EventType.RETURN
    bought = pd.Series(group_qty[is_buy], index=group_pair[is_buy])
    returned = pd.Series(group_qty[is_ret], index=group_pair[is_ret])
    ret_on_buy = returned.reindex(bought.index).fillna(0.0).to_numpy()
    kept = np.clip(1.0 - ret_on_buy / np.maximum(bought.to_numpy(), 1e-12), 0.0, 1.0)
    value[is_buy] *= kept

    shape = (len(users), len(items))
    # group_pair is sorted (it is the key's high part), so pairs are runs: sum each run.
    pair_starts = (
        np.flatnonzero(np.r_[True, group_pair[1:] != group_pair[:-1]])
        if len(group_pair)
        else group_pair
    )
    interest_pairs = group_pair[pair_starts]
    cell_values = np.add.reduceat(value, pair_starts) if len(pair_starts) else value
    cancelled = bought.index.to_numpy()[kept == 0.0]
    pairs_cancelled = int(np.isin(interest_pairs[cell_values <= 0], cancelled).sum())
    keep = cell_values > 0
    rows = (interest_pairs[keep] // n_items).astype(np.int32)
    cols = (interest_pairs[keep] % n_items).astype(np.int32)
    matrix = sp.csr_matrix(
        (cell_values[keep].astype(np.float32), (rows, cols)), shape=shape, dtype=np.float32
    )
    matrix.sort_indices()
    summary = MatrixSummary(
        users=shape[0],
        items=shape[1],
        nonzeros=int(matrix.nnz),
        events_used=int(mapped.sum()),
        events_unmapped=int((~mapped).sum()),
        pairs_cancelled=pairs_cancelled,
        returns_unmatched=returns_unmatched,
        reference_time=int(reference),
    )
    return matrix, summary


def _reference_time(config: MatrixConfig, ts: np.ndarray, timezone: str) -> int:
    if config.reference_time is not None:
        return parse_instant(config.reference_time, timezone, "matrix.reference_time")
    return int(ts.max()) if len(ts) else 0
