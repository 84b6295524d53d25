"""The learned ranking stage: trained by the nightly job, saved as LightGBM text, served."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.errors import ModelDirError, NotFittedError
from recsys.modeldir import current_path, verify
from recsys.ranker import FEATURES, LearnedRanker
from serving import Recommender
from tests.serving_shop import DAY, END_DAY, T0, build_shop_model

NOW = T0 + END_DAY * DAY


def _toy(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((600, len(FEATURES))).astype(np.float32)
    # the first feature decides relevance: a ranker must learn to put it first.
    labels = (x[:, 0] > 0.7).astype(np.int64) * 2
    return x, labels, np.full(30, 20)


def test_a_ranker_learns_to_order_by_what_predicts_the_label() -> None:
    x, labels, groups = _toy()
    ranker = LearnedRanker(seed=1).fit(x, labels, groups)
    # on rows it never saw, relevant rows score above the others (pairwise: AUC)
    fresh, fresh_labels, _ = _toy(seed=1)
    scores = ranker.predict(fresh)
    relevant, other = scores[fresh_labels > 0], scores[fresh_labels == 0]
    assert (relevant[:, None] > other[None, :]).mean() > 0.95
    assert ranker.trees > 0


def test_a_ranker_round_trips_through_lightgbm_text_with_the_same_scores() -> None:
    x, labels, groups = _toy()
    ranker = LearnedRanker(seed=1).fit(x, labels, groups)
    again = LearnedRanker.from_text(ranker.to_text())
    assert np.array_equal(ranker.predict(x), again.predict(x))


def test_a_ranker_scores_rows_exactly_as_lightgbm_itself_does() -> None:
    # Serving calls LightGBM's C function directly (a page view cannot spend Booster.predict's
    # Python set-up); the scores must be LightGBM's own, missing values included.
    x, labels, groups = _toy()
    ranker = LearnedRanker(seed=1).fit(x, labels, groups)
    rows = np.random.default_rng(3).normal(size=(97, len(FEATURES))).astype(np.float32)
    rows[::4, 1::3] = np.nan
    assert np.array_equal(ranker.predict(rows), ranker.booster_.predict(rows, num_threads=1))
    assert np.array_equal(ranker.predict(rows.astype(np.float64)), ranker.predict(rows))
    assert ranker.predict(rows[:0]).shape == (0,)
    with pytest.raises(ValueError, match="features expected"):
        ranker.predict(rows[:, :5])


def test_a_ranker_over_other_features_is_refused_with_a_clear_error() -> None:
    import lightgbm as lgb

    x, labels, groups = _toy()
    other = lgb.train(
        {"objective": "lambdarank", "verbose": -1},
        lgb.Dataset(x[:, :5], labels, group=groups),
        num_boost_round=2,
    )
    with pytest.raises(ModelDirError, match="trained on other features"):
        LearnedRanker.from_text(other.model_to_string(), "m/ranker.txt")
    with pytest.raises(ModelDirError, match="not a LightGBM model"):
        LearnedRanker.from_text("not a model", "m/ranker.txt")


def test_an_unfitted_ranker_says_so() -> None:
    with pytest.raises(NotFittedError, match="not fitted yet"):
        LearnedRanker().predict(np.zeros((1, len(FEATURES)), dtype=np.float32))


@pytest.fixture(scope="module")
def ranked_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shop_model(
        tmp_path_factory.mktemp("ranked-shop"),
        ranker={"enabled": True, "label_days": 7, "serve": "always"},
        # the ranker is published whatever the tiny holdout says, to test serving it.
        training={"holdout_days": 7},
    )


def test_the_published_ranker_is_a_checksummed_text_file_serving_loads(ranked_shop: Path) -> None:
    manifest = verify(current_path(ranked_shop))
    rec = Recommender.load(ranked_shop)
    # ranker.serve = "always": served whatever the tiny holdout says, and the report says so.
    assert manifest["metrics"]["ranker"]["served"]
    assert "ranker.txt" in manifest["files"]
    assert rec.model.ranker is not None
    assert (current_path(ranked_shop) / "ranker.txt").read_text().startswith("tree")


def test_anonymous_visits_are_answered_by_the_blend_not_the_ranker(ranked_shop: Path) -> None:
    rec = Recommender.load(ranked_shop)
    visit = rec.recommend(None, n=5, session_items=["sku1"], now=NOW)
    without = Recommender(ranked_shop, rec.model.with_ranker(None))
    assert visit.item_ids == without.recommend(None, n=5, session_items=["sku1"], now=NOW).item_ids


@pytest.fixture(scope="module")
def ranked_from_two_items(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shop_model(
        tmp_path_factory.mktemp("ranked-two-items"),
        ranker={"enabled": True, "label_days": 7, "serve": "always", "min_items": 2},
        training={"holdout_days": 7},
    )


def test_a_one_item_customer_is_answered_by_the_blend_when_the_ranker_needs_two_items(
    ranked_from_two_items: Path,
) -> None:
    rec = Recommender.load(ranked_from_two_items)
    assert rec.model.ranker is not None and rec.model.ranker_min_items == 2
    blend = Recommender(ranked_from_two_items, rec.model.with_ranker(None))
    # customer 100 only ever bought coffee: one item, so the blend answers them ...
    assert rec.recommend(100, n=5, now=NOW) == blend.recommend(100, n=5, now=NOW)
    # ... and a customer with many items gets the ranker's order.
    regular = [
        u for u in range(60) if rec.recommend(u, n=5, now=NOW) != blend.recommend(u, n=5, now=NOW)
    ]
    assert regular


def test_a_live_event_on_a_second_item_hands_a_one_item_customer_to_the_ranker(
    ranked_from_two_items: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = Recommender.load(ranked_from_two_items)
    ranker = rec.model.ranker
    assert ranker is not None
    asked: list[int] = []
    predict = ranker.predict
    monkeypatch.setattr(ranker, "predict", lambda rows: asked.append(len(rows)) or predict(rows))
    rec.recommend(100, n=5, now=NOW)
    assert asked == []
    rec.record_event(100, "sku7", "view", NOW - 60)
    rec.recommend(100, n=5, now=NOW)
    assert len(asked) == 1


def test_the_ranker_orders_only_the_blends_best_candidates(
    ranked_shop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    from recsys.answer import new_picker
    from recsys.blend import Candidates
    from recsys.fallback import ranker_candidates
    from recsys.filters import Filters
    from recsys.served import ServedModel

    loaded = Recommender.load(ranked_shop)
    assert loaded.model.ranker_max_rows == 60  # the default, recorded in the manifest
    every = dataclasses.replace(loaded.model, ranker_max_rows=None)
    five = dataclasses.replace(loaded.model, ranker_max_rows=5)

    def candidates(model: ServedModel) -> Candidates:
        picker = new_picker(model, 0, 40, Filters().resolved(model.serving))
        return ranker_candidates(model, 0, NOW, 40, picker)

    found, best = candidates(every), candidates(five)
    blended = found.parts @ five.blender.slot_weights
    expected = np.sort(found.items[np.lexsort((found.items, -blended))[:5]])
    assert len(found) > 5 and best.items.tolist() == expected.tolist()
    # Served: LightGBM is asked about those five rows only.
    ranker = five.ranker
    assert ranker is not None
    asked: list[int] = []
    predict = ranker.predict
    monkeypatch.setattr(ranker, "predict", lambda rows: asked.append(len(rows)) or predict(rows))
    Recommender(ranked_shop, five).recommend(0, n=3, now=NOW)
    assert asked == [5]
