"""Complementary items: bought (or carted) together in a basket, or by the same user over time."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys.config import CoPurchaseConfig
from recsys.models.base import FitData, Model
from recsys.schema import EVENT_TYPES
from recsys.sparse import topk_per_row


class CoPurchase(Model):
    """'Frequently bought together': item pairs scored by lift or confidence, with minimum support.

    A transaction is a basket (session / invoice id) or a user's whole purchase history, by
    configuration. `complements_` is an items x items CSR matrix: row a holds the k items b
    with the highest score(a -> b) among pairs seen in at least `min_support` transactions.
    lift(a, b) = n_ab x N / (n_a x n_b); confidence(a -> b) = n_ab / n_a.
    """

    name = "copurchase"
    learned = ("complements_", "item_transactions_")

    def __init__(self, config: CoPurchaseConfig | None = None) -> None:
        self.config = config or CoPurchaseConfig()

    def fit(self, data: FitData) -> CoPurchase:
        """Count item pairs per transaction and keep each item's best complements."""
        cfg = self.config
        h = data.history
        codes = np.array([EVENT_TYPES.index(e) for e in cfg.events], dtype=np.int8)
        keep = np.isin(h.events, codes)
        users = np.repeat(np.arange(h.n_users, dtype=np.int64), np.diff(h.indptr))[keep]
        items = h.items[keep].astype(np.int64)
        if cfg.unit == "basket":
            baskets = h.baskets[keep]
            # Events without a basket id form a basket of their own user.
            transaction = np.where(baskets >= 0, baskets, baskets.max(initial=-1) + 1 + users)
        else:
            transaction = users
        _, transaction = np.unique(transaction, return_inverse=True)
        n_tx = int(transaction.max()) + 1 if len(transaction) else 0
        basket = sp.csr_matrix(
            (np.ones(len(items), dtype=np.float32), (transaction, items)),
            shape=(n_tx, data.n_items),
        )
        basket.data[:] = 1.0  # duplicates were summed: presence is what counts
        counts = np.asarray(basket.sum(axis=0)).ravel()
        # Huge transactions (bulk orders, a wholesaler's whole history) pair everything with
        # everything; they count towards n_a but not towards pairs.
        sizes = np.diff(basket.indptr)
        small = sp.diags((sizes <= cfg.max_transaction_items).astype(np.float32))
        pairs = (basket.T @ (small @ basket)).tocoo()
        off = (pairs.row != pairs.col) & (pairs.data >= cfg.min_support)
        a, b, n_ab = pairs.row[off], pairs.col[off], pairs.data[off].astype(np.float64)
        score = n_ab * n_tx / (counts[a] * counts[b]) if cfg.score == "lift" else n_ab / counts[a]
        scored = sp.csr_matrix((score, (a, b)), shape=(data.n_items, data.n_items))
        self.complements_ = topk_per_row(scored, cfg.k)
        self.item_transactions_ = counts.astype(np.int32)
        return self

    def complements(self, item: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (items, scores) of an item's n best complements; empty if unknown."""
        self.check_fitted()
        if not 0 <= item < self.complements_.shape[0]:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
        lo, hi = self.complements_.indptr[item], self.complements_.indptr[item + 1]
        hi = min(hi, lo + n)
        return self.complements_.indices[lo:hi], self.complements_.data[lo:hi]
