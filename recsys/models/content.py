"""Items related by their catalogue attributes, for new and rarely seen items (cold start)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from recsys.config import ContentConfig
from recsys.models.base import FitData, Model, take_ranked

_SECONDS_PER_DAY = 86_400
# Similarity = 1.0·[same category] + 0.5·[same brand] + 0.25·[same price band]. As a 3-bit code
# 4c + 2b + p its order is the similarity's order, so levels are compared as small integers.
_CATEGORY, _BRAND, _BAND = 4, 2, 1
# The groups whose members share attributes, best level first: (category, brand, band),
# (category, brand), (category, band), (category), (brand, band), (brand). A group's members
# are related to each other with at least the similarity of the group's level.
_GROUPS: tuple[int, ...] = (7, 6, 5, 4, 3, 2)


def _similarity(level: int) -> float:
    """The similarity of a 3-bit level code."""
    return 1.0 * bool(level & _CATEGORY) + 0.5 * bool(level & _BRAND) + 0.25 * bool(level & _BAND)


class ContentModel(Model):
    """Catalogue neighbours (category, brand, price band), interaction counts and new arrivals.

    similarity(i, j) = 1.0·[same category] + 0.5·[same brand] + 0.25·[same price band], only
    for pairs sharing a category or a brand; -1 (unknown) never matches. Each item keeps its k
    best neighbours, ties broken by the neighbour's interaction count, then by lower index.

    Candidates: for each of the six attribute groups an item belongs to (see _GROUPS), the
    group's top M = k + 1 items by interaction count. This is exact, not an approximation: a j
    outside the top k + 1 of its own level's group has k items other than i (of that group,
    so at least as similar) ranked above it, so j is not in i's top k. It bounds the work at
    6·(k + 1) candidates per item, and every item, interacted or not, gets neighbours whenever
    a group of it has another member.

    Interactions are distinct users with a positive cell in `data.matrix` (returned purchases
    netted out). Price bands are global quantile bands of the known prices: band b holds prices
    from the b/B to the (b+1)/B quantile (a price on an edge goes up); NaN or infinite is -1.
    """

    name: ClassVar[str] = "content"
    learned: ClassVar[tuple[str, ...]] = (
        "price_band_",
        "neighbours_",
        "interactions_",
        "cold_",
        "new_",
        "arrivals_",
        "arrivals_category_indptr_",
        "arrivals_category_items_",
    )

    price_band_: np.ndarray
    neighbours_: sp.csr_matrix
    interactions_: np.ndarray
    cold_: np.ndarray
    new_: np.ndarray
    # new items, newest first (ties: lower index), and the same split by category (CSR layout).
    arrivals_: np.ndarray
    arrivals_category_indptr_: np.ndarray
    arrivals_category_items_: np.ndarray

    def __init__(self, config: ContentConfig | None = None) -> None:
        self.config = config or ContentConfig()

    def fit(self, data: FitData) -> ContentModel:
        """Learn price bands, catalogue neighbours, interaction counts and new arrivals."""
        n_items = data.n_items
        category = _checked_codes("item_category", data.item_category, n_items)
        if ((category >= data.n_categories) & (category >= 0)).any():
            first = int(np.flatnonzero(category >= data.n_categories)[0])
            raise ValueError(
                f"item_category code {int(category[first])} of item {first} is outside "
                f"0..{data.n_categories - 1} (n_categories = {data.n_categories}); "
                "-1 marks an item without a category"
            )
        brand = _checked_codes("item_brand", data.item_brand, n_items)
        band = _price_bands(np.asarray(data.item_price, dtype=np.float64), self.config.price_bands)
        matrix = sp.csr_matrix(data.matrix)
        interactions = np.bincount(matrix.indices[matrix.data > 0], minlength=n_items)

        self.price_band_ = band
        self.interactions_ = interactions.astype(np.int32)
        self.cold_ = self.interactions_ < self.config.cold_max_interactions
        self.neighbours_ = _neighbours(
            category, brand, band.astype(np.int32), interactions, self.config.k
        )

        first_seen = np.asarray(data.item_first_seen, dtype=np.int64)
        since = data.now - self.config.new_item_days * _SECONDS_PER_DAY
        self.new_ = first_seen >= since
        new = np.flatnonzero(self.new_)
        self.arrivals_ = new[np.lexsort((new, -first_seen[new]))].astype(np.int32)
        # A stable sort by category keeps the newest-first order inside each category.
        known = self.arrivals_[category[self.arrivals_] >= 0]
        by_category = known[np.argsort(category[known], kind="stable")]
        self.arrivals_category_items_ = by_category.astype(np.int32)
        self.arrivals_category_indptr_ = np.zeros(data.n_categories + 1, dtype=np.int64)
        counts = np.bincount(category[by_category], minlength=data.n_categories)
        np.cumsum(counts, out=self.arrivals_category_indptr_[1:])
        return self

    def similar(
        self, item: int, n: int, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return up to n items most like `item`, with similarity; an unknown item gives none."""
        self.check_fitted()
        neighbours = self.neighbours_
        if not 0 <= item < neighbours.shape[0]:
            return take_ranked(neighbours.indices[:0], neighbours.data[:0], 0, None)
        lo, hi = neighbours.indptr[item], neighbours.indptr[item + 1]
        return take_ranked(neighbours.indices[lo:hi], neighbours.data[lo:hi], n, exclude)

    def new_items(
        self, category: int | None = None, n: int = 20, exclude: np.ndarray | None = None
    ) -> np.ndarray:
        """Return up to n new arrivals, newest first, of one category or (None) of the shop."""
        self.check_fitted()
        if category is None:
            items = self.arrivals_
        elif 0 <= category < len(self.arrivals_category_indptr_) - 1:
            lo = self.arrivals_category_indptr_[category]
            hi = self.arrivals_category_indptr_[category + 1]
            items = self.arrivals_category_items_[lo:hi]
        else:
            items = self.arrivals_[:0]
        return take_ranked(items, items, n, exclude)[0]


def _checked_codes(name: str, codes: np.ndarray, n_items: int) -> np.ndarray:
    """Return attribute codes as int32, raising unless there is one per item, each >= -1."""
    codes = np.asarray(codes, dtype=np.int32)
    if len(codes) != n_items:
        raise ValueError(f"{name} has {len(codes)} entries but the matrix has {n_items} items")
    if (codes < -1).any():
        first = int(np.flatnonzero(codes < -1)[0])
        raise ValueError(
            f"{name} code {int(codes[first])} of item {first} is negative; "
            "-1 marks an unknown value"
        )
    return codes


def _price_bands(price: np.ndarray, bands: int) -> np.ndarray:
    """Return each item's quantile band of price, 0..bands-1, or -1 where the price is unknown."""
    out = np.full(len(price), -1, dtype=np.int8)
    known = np.isfinite(price)
    if known.any():
        edges = np.quantile(price[known], np.arange(1, bands) / bands)
        out[known] = np.searchsorted(edges, price[known], side="right")
    return out


def _neighbours(
    category: np.ndarray, brand: np.ndarray, band: np.ndarray, interactions: np.ndarray, k: int
) -> sp.csr_matrix:
    """Each item's k most similar items (float32 CSR, rows by similarity desc), without a loop."""
    n_items = len(category)
    attributes = ((_CATEGORY, category), (_BRAND, brand), (_BAND, band))
    # Interaction order: most interactions first, ties by lower index.
    by_rank = np.lexsort((np.arange(n_items), -interactions)).astype(np.int32)
    filled = np.zeros(n_items, dtype=np.int64)
    found: list[tuple[float, np.ndarray, np.ndarray, np.ndarray]] = []
    # Levels go best first, and each level's candidates come per row in interaction order, so
    # a pair's slot in its row is known when it is made: rows are filled without a sort.
    for level in _GROUPS:
        key, valid = _group_key(level, attributes)
        members = by_rank[valid[by_rank]]
        members = members[np.argsort(key[members], kind="stable")]
        if len(members) < 2:
            continue
        keys = key[members]
        group_start = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        group_size = np.diff(np.r_[group_start, len(members)])
        start = np.repeat(group_start, group_size)
        take = np.repeat(np.minimum(group_size, k + 1), group_size)
        # Rows already holding k neighbours from better levels need no more candidates.
        open_ = (filled[members] < k) & (take > 1)
        row_of, start, take = members[open_], start[open_], take[open_]
        offset = np.arange(take.sum()) - np.repeat(np.cumsum(take) - take, take)
        rows = np.repeat(row_of, take)
        cols = members[np.repeat(start, take) + offset]
        # Group members share the level's attributes; the pair is of this exact level when it
        # shares none of the others (a pair sharing more belongs to a better level's group).
        exact = rows != cols
        for bit, codes in attributes:
            if not level & bit:
                a = codes[rows]
                exact &= (a != codes[cols]) | (a < 0)
        rows, cols = rows[exact], cols[exact]
        if len(rows) == 0:
            continue
        run_start = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        run_size = np.diff(np.r_[run_start, len(rows)])
        slot = filled[rows] + np.arange(len(rows)) - np.repeat(run_start, run_size)
        kept = slot < k
        rows, cols, slot = rows[kept], cols[kept], slot[kept]
        filled += np.bincount(rows, minlength=n_items)
        found.append((_similarity(level), rows, cols, slot))

    indptr = np.zeros(n_items + 1, dtype=np.int64)
    np.cumsum(filled, out=indptr[1:])
    indices = np.zeros(int(indptr[-1]), dtype=np.int32)
    data = np.zeros(int(indptr[-1]), dtype=np.float32)
    for similarity, rows, cols, slot in found:
        where = indptr[rows] + slot
        indices[where] = cols
        data[where] = similarity
    return sp.csr_matrix((data, indices, indptr), shape=(n_items, n_items))


def _group_key(
    level: int, attributes: tuple[tuple[int, np.ndarray], ...]
) -> tuple[np.ndarray, np.ndarray]:
    """One int64 key per item for the group of a level's attributes, and which items have them."""
    n_items = len(attributes[0][1])
    key = np.zeros(n_items, dtype=np.int64)
    valid = np.ones(n_items, dtype=bool)
    for bit, codes in attributes:
        if level & bit:
            # Codes are >= -1, so code + 1 in a base of max + 2 keeps keys distinct.
            key = key * (int(codes.max(initial=-1)) + 2) + codes + 1
            valid &= codes >= 0
    return key, valid
