"""Collaborative filtering with implicit's ALS, and folding in users who arrived after training."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from recsys.config import ALSConfig
from recsys.errors import NotFittedError
from recsys.history import UserHistory
from recsys.models.als import ALSModel
from recsys.models.base import FitData

CONFIG = ALSConfig(factors=8, iterations=8, alpha=2.0, regularization=0.1, threads=1)


def _data(seed: int = 0) -> FitData:
    matrix = sp.random(60, 40, density=0.15, random_state=seed, format="csr", dtype=np.float32)
    matrix.data = np.ceil(matrix.data * 5)
    empty = UserHistory(
        indptr=np.zeros(61, np.int64),
        items=np.zeros(0, np.int32),
        events=np.zeros(0, np.int8),
        timestamps=np.zeros(0, np.int64),
        quantities=np.zeros(0, np.float32),
        baskets=np.zeros(0, np.int64),
    )
    return FitData.from_matrix(matrix, empty, now=0)


def test_same_seed_gives_the_same_factors() -> None:
    a = ALSModel(CONFIG, seed=3).fit(_data())
    b = ALSModel(CONFIG, seed=3).fit(_data())
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    assert a.item_factors_.shape == (40, 8) and a.user_factors_.shape == (60, 8)
    assert a.item_factors_.dtype == np.float32


def test_fold_in_gives_the_vector_implicits_recalculate_user_gives() -> None:
    data = _data()
    model = ALSModel(CONFIG, seed=1).fit(data)
    reference = AlternatingLeastSquares(factors=8, alpha=2.0, regularization=0.1)
    reference.user_factors = model.user_factors_
    reference.item_factors = model.item_factors_
    row = data.matrix[7]
    with threadpool_limits(1, "blas"):
        expected = reference.recalculate_user(7, row)
    np.testing.assert_allclose(model.fold_in(row.indices, row.data), expected, rtol=1e-4, atol=1e-5)


def test_fold_in_of_nothing_or_unknown_items_is_a_zero_vector() -> None:
    model = ALSModel(CONFIG).fit(_data())
    assert not model.fold_in(np.array([], dtype=np.int64), np.array([])).any()
    assert not model.fold_in(np.array([-1, 999]), np.array([1.0, 1.0])).any()


def test_a_users_own_items_score_above_average() -> None:
    data = _data()
    model = ALSModel(CONFIG).fit(data)
    vector = model.user_vector(5)
    assert vector is not None
    scores = model.scores(vector)
    assert scores[data.matrix[5].indices].mean() > scores.mean()
    assert model.user_vector(-1) is None and model.user_vector(60) is None


def test_unfitted_model_says_so() -> None:
    with pytest.raises(NotFittedError, match=r"ALSModel is not fitted yet"):
        ALSModel().scores(np.zeros(3))


def test_visitors_with_one_item_get_the_vector_fold_in_gives_them() -> None:
    data = _data()
    matrix = data.matrix.tolil()
    matrix[3, :] = 0
    matrix[3, 11] = 4.0  # user 3 now touched a single item
    matrix[4, :] = 0  # user 4 touched nothing (all cancelled by returns)
    data = FitData.from_matrix(matrix.tocsr(), data.history, now=0)
    model = ALSModel(CONFIG).fit(data)
    np.testing.assert_allclose(
        model.user_factors_[3], model.fold_in(np.array([11]), np.array([4.0])), rtol=1e-4, atol=1e-6
    )
    assert not model.user_factors_[4].any()
    everyone = ALSModel(dataclasses.replace(CONFIG, min_user_items=1)).fit(data)
    assert everyone.user_factors_[3].any()


def test_a_loaded_model_folds_in_like_the_trained_one_whatever_its_loaders_config() -> None:
    trained = ALSModel(dataclasses.replace(CONFIG, alpha=7.0, regularization=0.5)).fit(_data())
    loaded = ALSModel().load_arrays(trained.arrays())
    items, values = np.array([1, 5, 9]), np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(loaded.fold_in(items, values), trained.fold_in(items, values))


@pytest.mark.parametrize("items", [3, 20])
def test_fold_in_of_few_or_many_items_solves_the_same_system(items: int) -> None:
    model = ALSModel(CONFIG, seed=1).fit(_data())
    rng = np.random.default_rng(items)
    chosen = rng.choice(40, size=items, replace=False)
    values = rng.integers(1, 4, size=items).astype(np.float64)
    confidence = float(model.alpha_) * values
    y = model.item_factors_[chosen].astype(np.float64)
    direct = np.linalg.solve(model.gram_ + (y.T * (confidence - 1.0)) @ y, confidence @ y)
    np.testing.assert_allclose(model.fold_in(chosen, values), direct, rtol=1e-4, atol=1e-6)
