"""Item-to-item similarity from co-occurrence in user histories: top-k neighbours per item."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys.config import NeighboursConfig
from recsys.models.base import FitData, Model
from recsys.sparse import topk_per_row


class ItemNeighbours(Model):
    """'People who viewed this also viewed': cosine or BM25-weighted item-item similarity.

    `similarity_` is an items x items CSR matrix with each row's k neighbours, strongest first,
    never the item itself. The heavy lifting is implicit's all-pairs k-NN.
    """

    name = "neighbours"
    learned = ("similarity_",)

    def __init__(self, config: NeighboursConfig | None = None) -> None:
        self.config = config or NeighboursConfig()

    def fit(self, data: FitData) -> ItemNeighbours:
        """Compute the top-k neighbours of every item from the confidence matrix."""
        from implicit.nearest_neighbours import ItemItemRecommender, bm25_weight, normalize

        cfg = self.config
        counts = data.matrix.tocsr().astype(np.float32)
        # Weight item columns as implicit's Cosine/BM25 recommenders do, but hand CSR to the
        # k-NN (their own fit passes COO and warns). One extra neighbour: the item itself.
        if cfg.method == "bm25":
            weighted = bm25_weight(counts.T, cfg.bm25_k1, cfg.bm25_b).T
        else:
            weighted = normalize(counts.T).T
        knn = ItemItemRecommender(K=cfg.k + 1)
        with threadpool_limits(limits=1, user_api="blas"):
            knn.fit(sp.csr_matrix(weighted), show_progress=False)
        self.similarity_ = topk_per_row(knn.similarity, cfg.k, drop_diagonal=True)
        return self

    def similar(self, item: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (items, similarities) of an item's n nearest neighbours; empty if unknown."""
        self.check_fitted()
        if not 0 <= item < self.similarity_.shape[0]:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
        lo, hi = self.similarity_.indptr[item], self.similarity_.indptr[item + 1]
        hi = min(hi, lo + n)
        return self.similarity_.indices[lo:hi], self.similarity_.data[lo:hi]

    def score_items(
        self, items: np.ndarray, weights: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (candidates, scores, seeds): neighbours of weighted items, similarities summed."""
        self.check_fitted()
        return sum_rows(self.similarity_, items, weights)


def sum_rows(
    matrix: sp.csr_matrix, rows: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (columns, sums, seeds) of the weighted sum of the given CSR rows, in any order.

    A column's seed is the row that contributed most to its sum (the earlier row on a tie):
    the item a recommendation is "because of".
    """
    rows = np.asarray(rows, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float32)
    if len(rows) == 0:
        return _EMPTY
    valid = (rows >= 0) & (rows < matrix.shape[0])
    if not valid.all():
        rows, weights = rows[valid], weights[valid]
    if len(rows) == 1:
        # A CSR row's columns are distinct: nothing to group.
        lo, hi = int(matrix.indptr[rows[0]]), int(matrix.indptr[rows[0] + 1])
        return (
            matrix.indices[lo:hi],
            matrix.data[lo:hi] * weights[0],
            np.full(hi - lo, rows[0], dtype=np.int32),
        )
    starts = matrix.indptr[rows]
    lengths = matrix.indptr[rows + 1] - starts
    total = int(lengths.sum())
    if total == 0:
        return _EMPTY
    # Positions of every stored entry of the chosen rows, without a loop over rows.
    # (Array methods rather than np.* functions: this runs on every call, and the function
    # wrappers cost as much as the work on arrays this small.)
    offsets = (starts - lengths.cumsum() + lengths).repeat(lengths) + np.arange(total)
    cols = matrix.indices[offsets]
    vals = matrix.data[offsets] * weights.repeat(lengths)
    # One sort groups each column's entries, largest first (stable: earlier rows win ties).
    order = np.lexsort((-vals, cols))
    grouped = cols[order]
    starts_of = np.empty(total, dtype=bool)
    starts_of[0] = True
    np.not_equal(grouped[1:], grouped[:-1], out=starts_of[1:])
    group = np.empty(total, dtype=np.int64)
    group[order] = starts_of.cumsum() - 1
    sums = np.bincount(group, weights=vals).astype(np.float32)
    first = order[starts_of]
    return grouped[starts_of], sums, rows.repeat(lengths)[first].astype(np.int32)


_EMPTY = (np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int32))
