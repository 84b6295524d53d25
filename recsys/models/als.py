"""Collaborative filtering: implicit's ALS on the confidence matrix, kept as two factor arrays."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys.config import ALSConfig
from recsys.models.base import FitData, Model


class ALSModel(Model):
    """Implicit-feedback matrix factorisation (Hu, Koren & Volinsky 2008) via `implicit`.

    Only the factor arrays are kept, never implicit's object; `fold_in` personalises a user
    who was not in the training data from their fresh history. `user_factors_` exists after
    `fit` but is not saved: serving reads each user's candidates from the trainer's
    `ALSCandidates` instead (recsys/candidates.py), which is both faster and smaller.
    """

    name = "als"
    # gram_ (YᵀY + λI) and alpha_ travel with the factors, so that a loaded model folds users
    # in exactly as the trained one would, whatever configuration the loader has.
    learned = ("item_factors_", "gram_", "alpha_")

    def __init__(self, config: ALSConfig | None = None, seed: int = 0) -> None:
        self.config = config or ALSConfig()
        self.seed = seed

    _gram_inverse: np.ndarray | None = None

    def fit(self, data: FitData, init_item_factors: np.ndarray | None = None) -> ALSModel:
        """Factorise the confidence matrix; BLAS is held at one thread as implicit advises.

        `init_item_factors` (n_items x factors) warm-starts the item side, e.g. from the model
        fitted on the evaluation split; rows of zeros get small random values instead.
        """
        from implicit.cpu.als import AlternatingLeastSquares

        cfg = self.config
        matrix = data.matrix.tocsr().astype(np.float32)
        per_user = np.diff(matrix.indptr)
        core = np.flatnonzero(per_user >= cfg.min_user_items)
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
            if init_item_factors is not None:
                model.item_factors = _warm(init_item_factors, cfg.factors, self.seed)
            model.fit(matrix[core], show_progress=False)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        y = self.item_factors_.astype(np.float64)
        self.gram_ = y.T @ y + cfg.regularization * np.eye(cfg.factors)
        self._gram_inverse = None
        self.alpha_ = np.asarray(cfg.alpha, dtype=np.float64)
        users = np.zeros((matrix.shape[0], cfg.factors), dtype=np.float32)
        users[core] = model.user_factors
        self.user_factors_ = users
        self._fold_in_rest(matrix, per_user)
        return self

    def _fold_in_rest(self, matrix: sp.csr_matrix, per_user: np.ndarray) -> None:
        """Give users left out of the factorisation the vectors fold-in gives them."""
        single = np.flatnonzero(per_user == 1)
        if len(single):
            # One item: (G + (c-1) y yᵀ)⁻¹ c y = c G⁻¹y / (1 + (c-1) yᵀG⁻¹y) (Sherman-Morrison).
            items = matrix.indices[matrix.indptr[single]]
            c = float(self.alpha_) * matrix.data[matrix.indptr[single]].astype(np.float64)
            y = self.item_factors_[items].astype(np.float64)
            g_inv_y = y @ self.gram_inverse
            s = np.einsum("ij,ij->i", g_inv_y, y)
            self.user_factors_[single] = (c / (1.0 + (c - 1.0) * s))[:, None] * g_inv_y
        for user in np.flatnonzero((per_user > 1) & (per_user < self.config.min_user_items)):
            lo, hi = matrix.indptr[user], matrix.indptr[user + 1]
            self.user_factors_[user] = self.fold_in(matrix.indices[lo:hi], matrix.data[lo:hi])

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> ALSModel:
        """Restore learned state from arrays(); return self."""
        self._gram_inverse = None
        return super().load_arrays(arrays)

    def user_vector(self, user: int) -> np.ndarray | None:
        """Return a known user's factor vector, or None for an unknown index or a loaded model."""
        self.check_fitted()
        users = getattr(self, "user_factors_", None)
        if users is not None and 0 <= user < len(users):
            return np.asarray(users[user])
        return None

    @property
    def gram_inverse(self) -> np.ndarray:
        """(YᵀY + λI)⁻¹, computed once: fold-in of a few items is then a small solve."""
        self.check_fitted()
        inverse = getattr(self, "_gram_inverse", None)
        if inverse is None:
            inverse = np.linalg.inv(self.gram_)
            self._gram_inverse = inverse
        return inverse

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
        confidence = float(self.alpha_) * values
        yi = self.item_factors_[items].astype(np.float64)
        b = confidence @ yi
        if len(items) >= factors:
            a = self.gram_ + (yi.T * (confidence - 1.0)) @ yi
            return np.linalg.solve(a, b).astype(np.float32)
        # Few items (a visit): Woodbury's identity turns the factors x factors solve into one of
        # len(items) x len(items), about twice as fast; items with confidence 1 change nothing.
        g_inv = self.gram_inverse
        x = g_inv @ b
        low = confidence != 1.0
        if low.any():
            y, d = yi[low], confidence[low] - 1.0
            gy = g_inv @ y.T
            x -= gy @ np.linalg.solve(np.diag(1.0 / d) + y @ gy, y @ x)
        return x.astype(np.float32)

    def scores(self, user_vector: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """Return predicted preference of a user vector for the given items (default: all)."""
        self.check_fitted()
        factors = self.item_factors_ if items is None else self.item_factors_[items]
        return np.asarray(factors @ user_vector, dtype=np.float32)


def _warm(factors: np.ndarray, n_factors: int, seed: int) -> np.ndarray:
    """Item factors to start from: the given rows, small random values where a row is zero."""
    if factors.shape[1] != n_factors:
        raise ValueError(f"warm start has {factors.shape[1]} factors, the model {n_factors}")
    start = np.array(factors, dtype=np.float32)
    blank = ~start.any(axis=1)
    rng = np.random.default_rng(seed)
    start[blank] = rng.random((int(blank.sum()), n_factors), dtype=np.float32) * 0.01
    return start
