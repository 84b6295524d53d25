"""Simple baselines the engine must beat, scored the same way as the blend.

Every baseline answers `rank(user, n, visit)`: the top-n item indices for a user index (-1: a
visitor the model does not know) and, optionally, the item indices of their current visit.
"""

from __future__ import annotations

import warnings
from typing import Protocol

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys.history import UserHistory
from recsys.models.popularity import PopularityModel
from recsys.schema import EventType

_NONE = np.zeros(0, dtype=np.int64)


class Baseline(Protocol):
    """What the evaluation asks of a baseline."""

    def rank(self, user: int, n: int, visit: np.ndarray | None = None) -> np.ndarray:
        """The top-n item indices for a user index (-1: unknown) and their visit's items."""
        ...


class MostPopular:
    """The most popular items (distinct users, weighted by event type), the same for everyone."""

    def __init__(self, popularity: PopularityModel) -> None:
        self.popularity = popularity

    def rank(self, user: int, n: int, visit: np.ndarray | None = None) -> np.ndarray:
        """The n most popular items."""
        return self.popularity.top(n)[0].astype(np.int64)


class Trending:
    """The items gaining most interest lately, filled with the most popular ones."""

    def __init__(self, popularity: PopularityModel) -> None:
        self.popularity = popularity

    def rank(self, user: int, n: int, visit: np.ndarray | None = None) -> np.ndarray:
        """The n most trending items (then popular ones)."""
        items = self.popularity.trending(n)[0].astype(np.int64)
        if len(items) >= n:
            return items
        fill = self.popularity.top(n - len(items), exclude=items)[0].astype(np.int64)
        return np.concatenate([items, fill])


class RecentItems:
    """The user's own recent items: every item they touched, most recent first.

    On browse logs most next clicks are on things just looked at: the baseline to beat there.
    A visitor the model does not know gets their visit's items, most recent first.
    """

    def __init__(self, history: UserHistory) -> None:
        self.history = history

    def rank(self, user: int, n: int, visit: np.ndarray | None = None) -> np.ndarray:
        """The user's (or the visit's) distinct items, newest first."""
        if visit is not None and len(visit):
            items = np.asarray(visit, dtype=np.int64)
        elif 0 <= user < self.history.n_users:
            items = self.history.of(user)[0].astype(np.int64)
        else:
            return _NONE
        newest_first = items[::-1]
        _, first = np.unique(newest_first, return_index=True)
        return newest_first[np.sort(first)][:n]


class WindowPopular:
    """The items most users touched in the last `days` before `now` (e.g. the last 24 hours)."""

    def __init__(self, history: UserHistory, now: int, days: float) -> None:
        self.days = days
        since = now - days * 86_400
        owners = np.repeat(np.arange(history.n_users, dtype=np.int64), np.diff(history.indptr))
        recent = (history.timestamps >= since) & (history.events != EventType.RETURN)
        width = int(history.items.max(initial=0)) + 1
        # Each (user, item) once: popularity is how many people, not how many clicks.
        pairs = np.unique(owners[recent] * width + history.items[recent])
        unique, counts = np.unique(pairs % width, return_counts=True)
        self.items = unique[np.lexsort((unique, -counts))].astype(np.int64)

    def rank(self, user: int, n: int, visit: np.ndarray | None = None) -> np.ndarray:
        """The n items with most distinct users in the window."""
        return self.items[:n]


class BuyAgain:
    """Personal "buy again": a user's own most bought items, then the most popular ones.

    Items are ranked by how many times the user bought them, ties by the most recent
    purchase, then by item index; popular items the user has not bought fill the list. On
    repurchase-heavy logs this is a strong baseline that collaborative filtering alone does
    not beat.
    """

    def __init__(self, history: UserHistory, popularity: PopularityModel) -> None:
        self.history = history
        self.popularity = popularity

    def rank(self, user: int, n: int, visit: np.ndarray | None = None) -> np.ndarray:
        """The top-n item indices for a user index (-1 or unknown: popular only)."""
        mine = _NONE
        if 0 <= user < self.history.n_users:
            items, events, times = self.history.of(user)
            bought = events == EventType.PURCHASE
            if bought.any():
                items, times = items[bought].astype(np.int64), times[bought]
                unique, inverse, counts = np.unique(items, return_inverse=True, return_counts=True)
                last = np.zeros(len(unique), dtype=np.int64)
                np.maximum.at(last, inverse, times)
                mine = unique[np.lexsort((unique, -last, -counts))][:n]
        if len(mine) >= n:
            return mine
        fill, _ = self.popularity.top(n - len(mine), exclude=mine)
        return np.concatenate([mine, fill.astype(np.int64)])


class _ImplicitBaseline:
    """An `implicit` recommender with the library's defaults, on the engine's training matrix.

    Known users are ranked from their row of the matrix; a visitor from a row built of their
    visit's items. As the library does by default, items already in that row are left out.
    """

    def __init__(self, model: object, matrix: sp.csr_matrix, recalculate: bool) -> None:
        self.model = model
        self.matrix = matrix.tocsr().astype(np.float32)
        self._recalculate = recalculate
        # BLAS at one thread, as implicit advises, whatever the caller's environment says.
        # implicit's own cosine fit hands itself COO and warns about it: harmless, silenced.
        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            model.fit(self.matrix, show_progress=False)  # type: ignore[attr-defined]

    def rank(self, user: int, n: int, visit: np.ndarray | None = None) -> np.ndarray:
        """The top-n items for a known user, or for a visit's items (none known: nothing)."""
        n_users, n_items = self.matrix.shape
        recalculate = False
        if visit is not None and len(visit):
            items = np.unique(np.asarray(visit, dtype=np.int64))
            row = sp.csr_matrix(
                (np.ones(len(items), np.float32), (np.zeros(len(items), np.int64), items)),
                shape=(1, n_items),
            )
            userid, recalculate = 0, self._recalculate
        elif 0 <= user < n_users:
            row, userid = self.matrix[user], user
        else:
            return _NONE
        # Callers set BLAS to one thread around many calls (threadpool_limits costs ~0.5 ms).
        ids, _ = self.model.recommend(  # type: ignore[attr-defined]
            userid, row, N=n + row.nnz, recalculate_user=recalculate
        )
        ids = np.asarray(ids, dtype=np.int64)
        # implicit pads a short list with the row's own items (scored 0 or -3.4e38): the
        # library means to leave them out, so they are left out here.
        ids = ids[(ids >= 0) & ~np.isin(ids, row.indices)]
        return ids[:n]


class ImplicitALS(_ImplicitBaseline):
    """`implicit`'s ALS with library defaults (100 factors, regularization 0.01, 15 iterations)."""

    def __init__(self, matrix: sp.csr_matrix, seed: int = 0) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        super().__init__(AlternatingLeastSquares(random_state=seed), matrix, recalculate=True)


class ItemKNN(_ImplicitBaseline):
    """`implicit`'s item-kNN with cosine similarity and library defaults (20 neighbours)."""

    def __init__(self, matrix: sp.csr_matrix) -> None:
        from implicit.nearest_neighbours import CosineRecommender

        super().__init__(CosineRecommender(), matrix, recalculate=False)

    @property
    def similarity(self) -> sp.csr_matrix:
        """The item x item cosine similarity, kept to each item's nearest neighbours."""
        return self.model.similarity  # type: ignore[attr-defined]


class LastItemNeighbours:
    """Session baseline: the nearest neighbours of the visit's last item (item-kNN cosine)."""

    def __init__(self, knn: ItemKNN) -> None:
        self.similarity = knn.similarity.tocsr()

    def rank(self, user: int, n: int, visit: np.ndarray | None = None) -> np.ndarray:
        """The n items most similar to the visit's last item (no visit: nothing)."""
        if visit is None or len(visit) == 0:
            return _NONE
        last = int(visit[-1])
        lo, hi = self.similarity.indptr[last], self.similarity.indptr[last + 1]
        items = self.similarity.indices[lo:hi].astype(np.int64)
        scores = self.similarity.data[lo:hi]
        keep = items != last
        items, scores = items[keep], scores[keep]
        return items[np.lexsort((items, -scores))][:n]
