"""ALS retrieval for the blend: each visitor's top pool items, searched live or stored.

ALS scores a visitor against a pool of the most popular items only: the long tail's factors
are noise, and a bounded pool keeps the search cheap. `PoolSearch` does the exact search for
one vector (a visit folded in, or a user vector during evaluation). Searching live costs about
0.2 ms a call on a 20k pool, more than a page view can spend, so the trainer also writes
`ALSCandidates`: the top-k pool items of every known user and of every single item.

Why per item: ALS gives a user with one item a positive multiple of G⁻¹yᵢ (Sherman-Morrison;
G = YᵀY + λI), and the blend divides each strategy's scores by their maximum, so that user's
personal part depends on the item alone. Three in four visitors of a browse log have one item;
one list per item serves them and every one-item anonymous visit.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.models.als import ALSModel
from recsys.models.popularity import PopularityModel

_EMPTY = (np.zeros(0, np.int64), np.zeros(0, np.float32))


def popular_pool(popularity: PopularityModel, size: int) -> np.ndarray:
    """The item indices ALS scores: the `size` most popular, in index order."""
    return np.sort(popularity.popular_[:size]).astype(np.int64)


class PoolSearch:
    """Exact inner-product search of ALS vectors over a pool of item indices."""

    def __init__(self, als: ALSModel, pool: np.ndarray) -> None:
        import faiss

        self.als = als
        self.pool = np.asarray(pool, dtype=np.int64)
        factors = np.ascontiguousarray(als.item_factors_[self.pool], dtype=np.float32)
        # faiss scans a pool about twice as fast as a numpy product plus a partial sort.
        self.index = faiss.IndexFlatIP(factors.shape[1])
        self.index.add(factors)
        als.gram_inverse  # noqa: B018 - computed now, not on the first anonymous call

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (pool items, scores) of the top k per row, -1 where the pool runs out."""
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        scores, found = self.index.search(vectors, min(k, len(self.pool)))
        return np.where(found >= 0, self.pool[np.maximum(found, 0)], -1), scores

    def top(self, vector: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (items, scores) of one vector's top k; empty for a missing or zero vector."""
        if vector is None or not vector.any() or len(self.pool) == 0:
            return _EMPTY
        items, scores = self.search(vector, k)
        found = items[0] >= 0
        return items[0][found], scores[0][found]

    def visit(self, session: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the top k of a visit's items folded in as a new user (each item once)."""
        return self.top(self.als.fold_in(session, np.ones(len(session))), k)


class ALSCandidates:
    """Every known user's and every single item's top-k ALS pool items, computed by the trainer.

    `user_slot[u]` is u's row in the user lists, or -1 - i for a user whose only item is i (the
    item lists serve them), or `NONE` for a user with no personal part (a zero vector). Lists
    hold positions in `pool` (uint16 while the pool allows: it halves the store) and raw scores.
    """

    arrays_names = ("pool", "user_slot", "user_positions", "user_scores", "item_positions",
                    "item_scores", "item_ok")  # fmt: skip

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        missing = [name for name in self.arrays_names if name not in arrays]
        if missing:
            raise KeyError(f"ALSCandidates: arrays {missing} are missing")
        for name in self.arrays_names:
            setattr(self, name, np.asarray(arrays[name]))
        self.pool: np.ndarray
        self.user_slot: np.ndarray
        self.user_positions: np.ndarray
        self.user_scores: np.ndarray
        self.item_positions: np.ndarray
        self.item_scores: np.ndarray
        self.item_ok: np.ndarray
        self.none = -1 - len(self.item_ok)

    @property
    def k(self) -> int:
        """Length of every stored list."""
        return int(self.item_positions.shape[1])

    @classmethod
    def build(
        cls,
        als: ALSModel,
        matrix: sp.csr_matrix,
        pool: np.ndarray,
        k: int,
        threads: int = 1,
        users: np.ndarray | None = None,
    ) -> ALSCandidates:
        """Search the top-k pool items of every user of `matrix` and of every item, in batch.

        `threads` 0 means one per core. `users` (indices) limits the lists to what those users
        are answered from: their own lists, and the item lists of those whose only item it is;
        other users and items get none. An evaluation asks only such a sample of known users,
        and searching all 235k item lists of a shop for it cost about 30 s a model.
        """
        import faiss

        matrix = sp.csr_matrix(matrix)
        if getattr(als, "user_factors_", None) is None:
            raise ValueError("ALSCandidates.build needs a fitted ALS model (not a loaded one)")
        search = PoolSearch(als, pool)
        k = min(k, len(search.pool))
        n_users, n_items = matrix.shape
        per_user = np.diff(matrix.indptr)
        first = matrix.indptr[:-1]
        # One positive value: the vector is a positive multiple of the item's direction.
        single = per_user == 1
        single[single] = matrix.data[first[single]] > 0
        if users is not None:
            asked = np.zeros(n_users, dtype=bool)
            asked[np.asarray(users, dtype=np.int64)] = True
            single &= asked
        else:
            asked = np.ones(n_users, dtype=bool)
        own = np.flatnonzero(~single & asked & als.user_factors_.any(axis=1))
        user_slot = np.full(n_users, -1 - n_items, dtype=np.int32)
        user_slot[own] = np.arange(len(own), dtype=np.int32)
        user_slot[single] = -1 - matrix.indices[first[single]]
        item_ok = np.asarray(als.item_factors_.any(axis=1))
        listed = np.arange(n_items)
        if users is not None:
            listed = np.unique(matrix.indices[first[single]])
            wanted = np.zeros(n_items, dtype=bool)
            wanted[listed] = True
            item_ok = item_ok & wanted
        directions = (als.item_factors_[listed].astype(np.float64) @ als.gram_inverse).astype(
            np.float32
        )
        previous = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(int(threads) or os.cpu_count() or 1)
        try:
            user_positions, user_scores = _positions(search, als.user_factors_[own], k)
            found_positions, found_scores = _positions(search, directions, k)
        finally:
            faiss.omp_set_num_threads(previous)
        item_positions = np.zeros((n_items, k), dtype=found_positions.dtype)
        item_scores = np.zeros((n_items, k), dtype=np.float32)
        item_positions[listed], item_scores[listed] = found_positions, found_scores
        return cls(
            {
                "pool": search.pool,
                "user_slot": user_slot,
                "user_positions": user_positions,
                "user_scores": user_scores,
                "item_positions": item_positions,
                "item_scores": item_scores,
                "item_ok": item_ok,
            }
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array by name, for saving without pickle."""
        return {name: getattr(self, name) for name in self.arrays_names}

    def of_user(self, user: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (items, scores) of a known user's top k; empty when they have none."""
        slot = int(self.user_slot[user])
        if slot >= 0:
            return self._take(self.user_positions[slot], self.user_scores[slot], k)
        if slot > self.none:
            return self.of_item(-1 - slot, k)
        return _EMPTY

    def of_item(self, item: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (items, scores) of a visitor whose only item is `item`."""
        if not self.item_ok[item]:
            return _EMPTY
        return self._take(self.item_positions[item], self.item_scores[item], k)

    def _take(self, positions: np.ndarray, scores: np.ndarray, k: int) -> tuple[Any, Any]:
        return self.pool[positions[:k]], scores[:k]


def _positions(search: PoolSearch, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k pool positions and scores of many vectors, searched in blocks to bound memory."""
    dtype = np.uint16 if len(search.pool) <= np.iinfo(np.uint16).max + 1 else np.int32
    positions = np.zeros((len(vectors), k), dtype=dtype)
    scores = np.zeros((len(vectors), k), dtype=np.float32)
    block = 16_384
    if k == 0:
        return positions, scores
    for start in range(0, len(vectors), block):
        chunk = np.ascontiguousarray(vectors[start : start + block], dtype=np.float32)
        found_scores, found = search.index.search(chunk, k)
        # k never exceeds the pool, so every position is found for a nonzero vector
        positions[start : start + block] = np.maximum(found, 0)
        scores[start : start + block] = found_scores
    return positions, scores
