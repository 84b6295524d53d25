"""Sparse-matrix helpers shared by the models: top-k per row, without a Python loop per row."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def topk_per_row(matrix: sp.spmatrix, k: int, *, drop_diagonal: bool = False) -> sp.csr_matrix:
    """Keep each row's k largest positive entries (ties: lower column first); rows stay sorted.

    The result is CSR with each row's entries ordered by decreasing value.
    """
    if k <= 0:
        raise ValueError(f"k must be > 0 (got {k})")
    coo = sp.coo_matrix(matrix)
    keep = coo.data > 0
    if drop_diagonal:
        keep &= coo.row != coo.col
    rows, cols, vals = coo.row[keep], coo.col[keep], coo.data[keep]
    # Order by row, then value descending, then column: one lexsort for the whole matrix.
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    counts = np.bincount(rows, minlength=matrix.shape[0])
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    rank = np.arange(len(rows)) - starts
    kept = rank < k
    rows, cols, vals = rows[kept], cols[kept], vals[kept]
    indptr = np.zeros(matrix.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=matrix.shape[0]), out=indptr[1:])
    return sp.csr_matrix(
        (vals.astype(np.float32), cols.astype(np.int32), indptr), shape=matrix.shape
    )


def row_items(matrix: sp.csr_matrix, row: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (column indices, values) of one CSR row, in stored order."""
    lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
    return matrix.indices[lo:hi], matrix.data[lo:hi]
