"""Training on Spark: the same models as the single-machine job, and a model serving loads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pyspark", reason="Spark training needs pyspark: pip install '.[spark]'")

from recsys.config import (
    ALSConfig,
    CoPurchaseConfig,
    NeighboursConfig,
    PopularityConfig,
    load_config,
)
from recsys.ingest import load_events
from recsys.modeldir import current_path, read_manifest
from recsys.models.base import FitData, Model
from recsys.models.copurchase import CoPurchase
from recsys.models.neighbours import ItemNeighbours
from recsys.models.popularity import PopularityModel
from recsys.schema import EventType as E
from recsys.spark import spark_session
from serving import Recommender
from tests.models_fixtures import fit_data
from tests.serving_shop import shop_config, write_shop
from training.spark import spark_train
from training.spark.spark_ingest import SparkEventLog
from training.spark.spark_train import (
    als_spark,
    copurchase_spark,
    entries_frame,
    events_frame,
    neighbours_spark,
    popularity_spark,
    train_spark,
)

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    session = spark_session(
        "local[2]", {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4"}
    )
    yield session
    session.stop()


def assert_same_arrays(spark_model: Model, local_model: Model) -> None:
    """Every learned array equal: integers exactly, float32 scores to the last bits or so."""
    ours, theirs = spark_model.arrays(), local_model.arrays()
    assert ours.keys() == theirs.keys()
    for name, expected in theirs.items():
        got = ours[name]
        assert got.dtype == expected.dtype, name
        if np.issubdtype(expected.dtype, np.floating):
            np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(got, expected, err_msg=name)


def random_log(seed: int, users: int, items: int, per_user: int) -> list[tuple[Any, ...]]:
    """(user, item, event, day, basket) rows: views, carts and purchases over 30 days."""
    rng = np.random.default_rng(seed)
    kinds = [E.VIEW, E.VIEW, E.VIEW, E.CART, E.FAVOURITE, E.PURCHASE, E.PURCHASE, E.RETURN]
    rows: list[tuple[Any, ...]] = []
    for user in range(users):
        for _ in range(int(rng.integers(1, per_user))):
            day = float(rng.integers(0, 30)) + float(rng.random())
            basket = f"b{user}-{int(day) // 7}" if rng.random() < 0.8 else None
            item = int(rng.integers(0, items))
            rows.append((f"u{user}", item, kinds[int(rng.integers(0, len(kinds)))], day, basket))
    return rows


@pytest.fixture(scope="module")
def shop_log() -> FitData:
    """A random shop log of 40 users and 15 items, 4 categories (and one item without).

    Item 15 was only bought and viewed on the first day, a month before the end.
    """
    rows = random_log(11, users=40, items=15, per_user=12)
    rows += [("u1", 15, E.PURCHASE, 0, "b1-0"), ("u2", 15, E.VIEW, 0, None)]
    category = np.array([i % 4 for i in range(14)] + [-1, 1], dtype=np.int32)
    return fit_data(
        rows,
        items=list(range(16)),
        weights={"view": 1.0, "cart": 3.0, "favourite": 2.0, "purchase": 5.0},
        item_category=category,
    )


def test_popularity_lists_on_spark_equal_the_single_machine_lists(
    spark: Any, shop_log: FitData
) -> None:
    config = PopularityConfig(trending_window_days=10, per_category=2)
    model = popularity_spark(events_frame(shop_log, spark), shop_log, config)
    assert_same_arrays(model, PopularityModel(config).fit(shop_log))
    # The trending window leaves the month-old item out; popularity still counts it.
    assert 15 in model.popular_ and 15 not in model.trending_


def test_cosine_neighbours_on_spark_equal_the_single_machine_similarity(
    spark: Any, shop_log: FitData
) -> None:
    config = NeighboursConfig(k=4)
    model = neighbours_spark(entries_frame(shop_log, spark), shop_log, config)
    local = ItemNeighbours(config).fit(shop_log)
    assert_same_arrays(model, local)
    assert model.similarity_.diagonal().sum() == 0


# Baskets: 0+1 bought together three times, 1+2 twice, 3+4 by two users without a basket id;
# one bulk order of five items pairs nothing; views never count.
BASKETS = fit_data(
    [
        *[("u0", i, E.PURCHASE, 1, "o1") for i in (0, 1)],
        *[("u1", i, E.PURCHASE, 2, "o2") for i in (0, 1, 2)],
        ("u2", 0, E.CART, 3, "o3"),
        ("u2", 1, E.PURCHASE, 3, "o3"),
        *[("u3", i, E.PURCHASE, 4, "o4") for i in (1, 2)],
        *[("u5", i, E.PURCHASE, 5, "o5") for i in range(5)],
        *[(u, i, E.PURCHASE, 6) for u in ("u6", "u7") for i in (3, 4)],
        ("u0", 3, E.PURCHASE, 7, "o6"),
        *[("u8", i, E.VIEW, 8, "o7") for i in (0, 1, 2)],
    ],
    items=list(range(6)),
)


@pytest.mark.parametrize(
    ("config", "log"),
    [
        (CoPurchaseConfig(unit="basket", events=("purchase", "cart"), max_transaction_items=4), 0),
        (CoPurchaseConfig(unit="basket", k=1), 0),
        (CoPurchaseConfig(unit="user", score="confidence", min_support=1, k=5), 1),
    ],
    ids=["lift-per-basket", "top-1", "confidence-per-user"],
)
def test_copurchase_on_spark_equals_the_single_machine_complements(
    spark: Any, shop_log: FitData, config: CoPurchaseConfig, log: int
) -> None:
    data = (BASKETS, shop_log)[log]
    model = copurchase_spark(events_frame(data, spark), data, config)
    local = CoPurchase(config).fit(data)
    assert local.complements_.nnz > 0
    assert_same_arrays(model, local)


def test_spark_als_ranks_what_a_users_peers_bought_above_unrelated_items(spark: Any) -> None:
    # Two crowds: u0..u9 buy from items 0-3, u10..u19 from items 4-7; "solo" bought item 0 once.
    rng = np.random.default_rng(5)
    rows: list[tuple[Any, ...]] = []
    for user in range(20):
        group = range(0, 4) if user < 10 else range(4, 8)
        for item in rng.choice(list(group), size=3, replace=False):
            rows.append((f"u{user}", int(item), E.PURCHASE, 0))
    rows.append(("solo", 0, E.PURCHASE, 1))
    data = fit_data(rows, users=[*(f"u{u}" for u in range(20)), "solo"], items=list(range(8)))
    config = ALSConfig(factors=4, iterations=8, regularization=0.1)
    model = als_spark(entries_frame(data, spark), data, config, seed=1)

    assert model.item_factors_.shape == (8, 4)
    assert model.user_factors_.shape == (21, 4)
    assert model.gram_.shape == (4, 4)
    for user in (0, 15):
        history = set(data.matrix[user].indices.tolist())
        same_crowd = set(range(0, 4) if user < 10 else range(4, 8))
        scores = model.scores(model.user_vector(user))
        unseen_peer = sorted(same_crowd - history)
        other = sorted(set(range(8)) - same_crowd)
        assert min(scores[unseen_peer]) > max(scores[other])
    # A one-item user gets exactly the fold-in vector, as ALSModel.fit gives it.
    np.testing.assert_allclose(
        model.user_vector(20), model.fold_in(np.array([0]), np.array([1.0])), rtol=1e-5
    )


def test_a_spark_trained_model_directory_is_served_unchanged(spark: Any, tmp_path: Path) -> None:
    write_shop(tmp_path)
    config = shop_config(tmp_path)
    result = train_spark(config, out=tmp_path / "spark-models", spark=spark, force=True)
    assert result.path is not None and result.path.parent == tmp_path / "spark-models"
    # The job's own steps: the holdout evaluation and gate ran on the Spark-fitted models.
    assert result.evaluation is not None and result.gate is not None
    assert {"fit on train split", "evaluate", "write", "publish"} <= set(result.timings)

    recommender = Recommender.load(tmp_path / "spark-models")
    found = recommender.recommend(7, 5)
    assert len(found) == 5
    assert found.user_known
    assert len(set(found.item_ids)) == 5


def test_the_command_loads_and_trains_the_bundled_sample_on_spark_last(
    spark: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Last in this module: the command stops the session it gets (the shared one) when done.
    from training.cli import EXIT_OK, main

    # The real Spark loader, counted: the command must read the log with it, not on the driver.
    loaded: list[SparkEventLog] = []
    real_loader = spark_train.load_events_spark

    def load_on_spark(*args: Any, **kwargs: Any) -> SparkEventLog:
        loaded.append(real_loader(*args, **kwargs))
        return loaded[-1]

    monkeypatch.setattr(spark_train, "load_events_spark", load_on_spark)
    sample = Path(__file__).resolve().parents[1] / "data" / "configs" / "sample.toml"
    local = load_events(load_config(sample), rejects_dir=tmp_path / "local-rejects").report
    code = main(
        [
            "-q",
            "train",
            "--config",
            str(sample),
            "--out",
            str(tmp_path / "models"),
            "--engine",
            "spark",
            "--master",
            "local[2]",
            "--force",
        ]
    )
    assert code == EXIT_OK
    assert "published version 000001" in capsys.readouterr().out
    assert len(loaded) == 1
    counts = read_manifest(current_path(tmp_path / "models"))["counts"]["events"]
    assert (counts["rows_read"], counts["accepted"], counts["rejected"]) == (
        local.rows_read,
        local.accepted,
        local.rejected,
    )
    assert local.rejected  # the sample has bad rows: the rejected counts are compared by reason
    assert len(Recommender.load(tmp_path / "models").recommend(13047, 5)) == 5
