"""Collaborative filtering: implicit's ALS on the confidence matrix, kept as two factor arrays."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from recsys.config import ALSConfig
from recsys.models.base import FitData, Model


class ALSModel(Model):
    """Implicit-feedback matrix factorisation (Hu, Koren & Volinsky 2008) via `implicit`.

    Only the factor arrays are kept, never implicit's object; `fold_in` personalises a user
    who was not in the training data from their fresh history.
    """

    name = "als"
    learned = ("user_factors_", "item_factors_")

    def __init__(self, config: ALSConfig | None = None, seed: int = 0) -> None:
        self.config = config or ALSConfig()
        self.seed = seed
        self._gram_cache: tuple[np.ndarray, np.ndarray] | None = None

    def fit(self, data: FitData) -> ALSModel:
        """Factorise the confidence matrix; BLAS is held at one thread as implicit advises."""
        from implicit.cpu.als import AlternatingLeastSquares

        cfg = self.config
        with threadpool_limits(limits=1, user_api="blas"):
            model = AlternatingLeastSquares(
                factors=cfg.factors,
                regularization=cfg.regularization,
                alpha=cfg.alpha,
                iterations=cfg.iterations,
                random_state=self.seed,
                num_threads=cfg.threads,
                calculate_training_loss=False,
            )
            model.fit(data.matrix.tocsr().astype(np.float32), show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        return self

    def user_vector(self, user: int) -> np.ndarray | None:
        """Return a known user's factor vector, or None for an unknown index."""
        self.check_fitted()
        if 0 <= user < len(self.user_factors_):
            return self.user_factors_[user]
        return None

    def fold_in(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Return the user vector that ALS would give a user with these (item, matrix value)s.

        Solves (YᵀY + λI + Σ (cᵢ-1) yᵢyᵢᵀ) x = Σ cᵢ yᵢ with cᵢ = alpha x value, as implicit's
        `recalculate_user` does; items outside the model are ignored.
        """
        self.check_fitted()
        items = np.asarray(items, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        keep = (items >= 0) & (items < len(self.item_factors_))
        items, values = items[keep], values[keep]
        factors = self.item_factors_.shape[1]
        if len(items) == 0:
            return np.zeros(factors, dtype=np.float32)
        y = self.item_factors_.astype(np.float64)
        confidence = self.config.alpha * values
        yi = y[items]
        a = self._gram() + (yi.T * (confidence - 1.0)) @ yi
        b = confidence @ yi
        return np.linalg.solve(a, b).astype(np.float32)

    def _gram(self) -> np.ndarray:
        # YᵀY + λI depends only on the item factors: computed once per fitted/loaded model.
        cached = self._gram_cache
        if cached is None or cached[0] is not self.item_factors_:
            y = self.item_factors_.astype(np.float64)
            cached = (self.item_factors_, y.T @ y + self.config.regularization * np.eye(y.shape[1]))
            self._gram_cache = cached
        return cached[1]

    def scores(self, user_vector: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """Return predicted preference of a user vector for the given items (default: all)."""
        self.check_fitted()
        factors = self.item_factors_ if items is None else self.item_factors_[items]
        return np.asarray(factors @ user_vector, dtype=np.float32)
