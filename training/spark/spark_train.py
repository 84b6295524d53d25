"""Training on Spark: the models whose work grows with the log, fitted into the same classes.

`fit_models_spark` returns the same model objects as `training.job.fit_models`, so the job's
writer and serving take them unchanged. On Spark: ALS (Spark's ALS), popularity counts, cosine
item neighbours and co-purchase pair counts. On the driver: whatever is items-sized (ranking
the per-item counts, building the CSR of at most k entries per item) and the models that are
cheap on one machine (repurchase, content, segments, BM25 neighbours).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.config import (
    ALSConfig,
    Config,
    CoPurchaseConfig,
    NeighboursConfig,
    PopularityConfig,
)
from recsys.models.als import ALSModel
from recsys.models.base import FitData, Model
from recsys.models.copurchase import CoPurchase
from recsys.models.neighbours import ItemNeighbours
from recsys.models.popularity import (
    PopularityModel,
    _checked_categories,
    _ranked,
    _weights,
)
from recsys.schema import EVENT_TYPES, EventType
from recsys.spark import spark_session
from recsys.sparse import topk_per_row
from training.job import TrainResult, fit_small_models, train
from training.spark.spark_ingest import load_events_spark, to_event_log

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

_SECONDS_PER_DAY = 86_400.0


def fit_models_spark(data: FitData, config: Config, spark: SparkSession) -> dict[str, Model]:
    """Fit every enabled model as `fit_models` does, the log-sized work on Spark."""
    cfg = config.models
    events = events_frame(data, spark).cache()
    entries = entries_frame(data, spark).cache()
    try:
        models: dict[str, Model] = {
            "popularity": popularity_spark(events, data, cfg.popularity),
        }
        if cfg.als.enabled:
            models["als"] = als_spark(entries, data, cfg.als, config.seed)
        if cfg.neighbours.enabled:
            if cfg.neighbours.method == "cosine":
                models["neighbours"] = neighbours_spark(entries, data, cfg.neighbours)
            else:
                # BM25 weighting is not ported: implicit fits it on the driver.
                models["neighbours"] = ItemNeighbours(cfg.neighbours).fit(data)
        if cfg.copurchase.enabled:
            models["copurchase"] = copurchase_spark(events, data, cfg.copurchase)
    finally:
        events.unpersist()
        entries.unpersist()
    # Cheap on one machine at any scale: fitted on the driver, as the job fits them.
    return fit_small_models(data, config, models)


def events_frame(data: FitData, spark: SparkSession) -> DataFrame:
    """The history as a Spark frame: user, item, event, ts, basket (one row per event)."""
    h = data.history
    frame = pd.DataFrame(
        {
            "user": np.repeat(np.arange(h.n_users, dtype=np.int64), h.lengths()),
            "item": h.items.astype(np.int64),
            "event": h.events.astype(np.int32),
            "ts": h.timestamps.astype(np.int64),
            "basket": h.baskets.astype(np.int64),
        }
    )
    return spark.createDataFrame(frame)


def entries_frame(data: FitData, spark: SparkSession) -> DataFrame:
    """The confidence matrix's non-zeros as a Spark frame: user, item, value."""
    coo = sp.coo_matrix(data.matrix)
    frame = pd.DataFrame(
        {
            "user": coo.row.astype(np.int32),
            "item": coo.col.astype(np.int32),
            "value": coo.data.astype(np.float64),
        }
    )
    return spark.createDataFrame(frame)


def popularity_spark(events: DataFrame, data: FitData, config: PopularityConfig) -> PopularityModel:
    """PopularityModel with the counts of `PopularityModel.fit`, aggregated on Spark."""
    from pyspark.sql import functions as F

    category = _checked_categories(data)
    weights = _weights(config)
    weighted = events.withColumn(
        "weight", F.element_at(F.array(*[F.lit(float(w)) for w in weights]), F.col("event") + 1)
    )
    counted = weighted.where(F.col("weight") > 0)
    # Distinct users: each (user, item, type) counts once.
    popular = (
        counted.select("user", "item", "event", "weight")
        .distinct()
        .groupBy("item")
        .agg(F.sum("weight").alias("score"))
    )
    buyers = (
        events.where(F.col("event") == int(EventType.PURCHASE))
        .select("user", "item")
        .distinct()
        .groupBy("item")
        .agg(F.count(F.lit(1)).cast("double").alias("score"))
    )
    window = config.trending_window_days * _SECONDS_PER_DAY
    age = F.lit(data.now) - F.col("ts")
    # Each (user, item, type) weighs by the age of its newest event inside the window.
    trending = (
        counted.where((age >= 0) & (age <= window))
        .groupBy("user", "item", "event", "weight")
        .agg(F.max("ts").alias("newest"))
        .withColumn(
            "decayed",
            F.col("weight")
            * F.pow(
                F.lit(2.0),
                -((F.lit(data.now) - F.col("newest")) / _SECONDS_PER_DAY)
                / config.trending_half_life_days,
            ),
        )
        .groupBy("item")
        .agg(F.sum("decayed").alias("score"))
    )
    model = PopularityModel(config)
    n_items = data.n_items
    model.popular_, model.popular_scores_ = _ranked(_per_item(popular, n_items))
    model.bestsellers_, model.bestseller_scores_ = _ranked(_per_item(buyers, n_items))
    model.trending_, model.trending_scores_ = _ranked(_per_item(trending, n_items))
    model.rank_ = np.full(n_items, len(model.popular_), dtype=np.int32)
    model.rank_[model.popular_] = np.arange(len(model.popular_), dtype=np.int32)
    # The per-category lists split the items-sized popular list: the model's own code does it.
    model._fit_categories(category, data.n_categories)
    return model


def neighbours_spark(entries: DataFrame, data: FitData, config: NeighboursConfig) -> ItemNeighbours:
    """ItemNeighbours with cosine similarity: item columns L2-normalised, joined on user."""
    from pyspark.sql import functions as F

    if config.method != "cosine":
        raise ValueError(f"neighbours_spark computes cosine only (got method {config.method!r})")
    norms = entries.groupBy("item").agg(F.sqrt(F.sum(F.col("value") ** 2)).alias("norm"))
    unit = entries.join(norms, "item").select(
        "user", "item", (F.col("value") / F.col("norm")).alias("w")
    )
    a, b = unit.alias("a"), unit.alias("b")
    pairs = (
        a.join(b, F.col("a.user") == F.col("b.user"))
        .where(F.col("a.item") != F.col("b.item"))
        .groupBy(F.col("a.item").alias("row"), F.col("b.item").alias("col"))
        .agg(F.sum(F.col("a.w") * F.col("b.w")).alias("score"))
        .where(F.col("score") > 0)
    )
    model = ItemNeighbours(config)
    model.similarity_ = _top_k_csr(pairs, config.k, data.n_items)
    return model


def copurchase_spark(events: DataFrame, data: FitData, config: CoPurchaseConfig) -> CoPurchase:
    """CoPurchase with transaction and pair counts aggregated on Spark."""
    from pyspark.sql import functions as F

    codes = [EVENT_TYPES.index(e) for e in config.events]
    kept = events.where(F.col("event").isin(codes))
    if config.unit == "basket":
        # Events without a basket id form a basket of their own user (negative codes).
        tx = F.when(F.col("basket") >= 0, F.col("basket")).otherwise(-(F.col("user") + 1))
    else:
        tx = F.col("user")
    presence = kept.select(tx.alias("tx"), "item").distinct().cache()
    try:
        n_tx = presence.select("tx").distinct().count()
        counts = presence.groupBy("item").agg(F.count(F.lit(1)).alias("n"))
        # Bulk transactions count towards n_a but form no pairs.
        small = (
            presence.groupBy("tx")
            .agg(F.count(F.lit(1)).alias("size"))
            .where(F.col("size") <= config.max_transaction_items)
            .select("tx")
        )
        paired = presence.join(small, "tx")
        a, b = paired.alias("a"), paired.alias("b")
        pairs = (
            a.join(b, F.col("a.tx") == F.col("b.tx"))
            .where(F.col("a.item") != F.col("b.item"))
            .groupBy(F.col("a.item").alias("row"), F.col("b.item").alias("col"))
            .agg(F.count(F.lit(1)).cast("double").alias("n_ab"))
            .where(F.col("n_ab") >= config.min_support)
            .join(counts.select(F.col("item").alias("row"), F.col("n").alias("n_a")), "row")
            .join(counts.select(F.col("item").alias("col"), F.col("n").alias("n_b")), "col")
        )
        if config.score == "lift":
            score = F.col("n_ab") * n_tx / (F.col("n_a") * F.col("n_b")).cast("double")
        else:
            score = F.col("n_ab") / F.col("n_a")
        model = CoPurchase(config)
        model.complements_ = _top_k_csr(pairs.withColumn("score", score), config.k, data.n_items)
        item_counts = counts.withColumn("score", F.col("n").cast("double"))
        model.item_transactions_ = _per_item(item_counts, data.n_items).astype(np.int32)
    finally:
        presence.unpersist()
    return model


def als_spark(entries: DataFrame, data: FitData, config: ALSConfig, seed: int) -> ALSModel:
    """ALSModel with item and user factors from Spark's ALS; other users folded in as `fit` does.

    Spark's solver differs from implicit's: confidence is 1 + alpha x value (implicit:
    alpha x value) and lambda is scaled by each user's and item's rating count (ALS-WR). The
    gram matrix and fold-in keep implicit's form, so factors are the same kind, not equal.
    """
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    matrix = data.matrix.tocsr().astype(np.float32)
    per_user = np.diff(matrix.indptr)
    # As in ALSModel.fit: users with few items are folded in afterwards, not factorised.
    core = (
        entries.withColumn("n", F.count(F.lit(1)).over(Window.partitionBy("user")))
        .where(F.col("n") >= config.min_user_items)
        .select("user", "item", F.col("value").cast("float").alias("value"))
    )
    model = ALSModel(config, seed=seed)
    item_factors = np.zeros((data.n_items, config.factors), dtype=np.float32)
    user_factors = np.zeros((data.n_users, config.factors), dtype=np.float32)
    if (per_user >= config.min_user_items).any():
        fitted = ALS(
            implicitPrefs=True,
            rank=config.factors,
            regParam=config.regularization,
            alpha=config.alpha,
            maxIter=config.iterations,
            seed=seed,
            nonnegative=False,
            userCol="user",
            itemCol="item",
            ratingCol="value",
        ).fit(core)
        _fill_factors(item_factors, fitted.itemFactors)
        _fill_factors(user_factors, fitted.userFactors)
    model.item_factors_ = item_factors
    y = item_factors.astype(np.float64)
    model.gram_ = y.T @ y + config.regularization * np.eye(config.factors)
    model._gram_inverse = None
    model.alpha_ = np.asarray(config.alpha, dtype=np.float64)
    model.user_factors_ = user_factors
    model._fold_in_rest(matrix, per_user)
    return model


def train_spark(
    config: Config,
    *,
    out: Path | None = None,
    force: bool = False,
    on_error: str | None = None,
    spark: SparkSession | None = None,
    master: str | None = None,
    conf: dict[str, str] | None = None,
) -> TrainResult:
    """Run the nightly job with its log loaded and models fitted on Spark: same gate, directory.

    The event log is read and validated on Spark and collected in the log's order; the ids,
    matrices and the catalogue are built on the driver as before. The models whose work grows
    with the log (popularity, neighbours, co-purchase, ALS) are fitted by Spark. A session
    given is used and left open; otherwise one is started and stopped.
    """
    session = spark or spark_session(master, conf)
    try:
        return train(
            config,
            out=out,
            force=force,
            on_error=on_error,
            fit=lambda data, cfg: fit_models_spark(data, cfg, session),
            load=lambda config, on_error=None, rejects_dir=None: to_event_log(
                load_events_spark(config, session, on_error=on_error, rejects_dir=rejects_dir)
            ),
        )
    finally:
        if spark is None:
            session.stop()


def _per_item(frame: DataFrame, n_items: int) -> np.ndarray:
    """Collect an (item, score) frame into a float64 vector over all items, 0 where absent."""
    rows = frame.select("item", "score").toPandas()
    vector = np.zeros(n_items, dtype=np.float64)
    vector[rows["item"].to_numpy(dtype=np.int64)] = rows["score"].to_numpy(dtype=np.float64)
    return vector


def _top_k_csr(pairs: DataFrame, k: int, n_items: int) -> sp.csr_matrix:
    """Each row's k best (row, col, score) pairs, cut on Spark, as topk_per_row's CSR."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    # Ties as topk_per_row breaks them (lower column first); only k per row reach the driver.
    order = Window.partitionBy("row").orderBy(F.col("score").desc(), F.col("col").asc())
    top = (
        pairs.withColumn("rank", F.row_number().over(order))
        .where(F.col("rank") <= k)
        .select("row", "col", "score")
        .toPandas()
    )
    scored = sp.coo_matrix(
        (
            top["score"].to_numpy(dtype=np.float64),
            (top["row"].to_numpy(dtype=np.int64), top["col"].to_numpy(dtype=np.int64)),
        ),
        shape=(n_items, n_items),
    )
    return topk_per_row(scored, k)


def _fill_factors(target: np.ndarray, factors: DataFrame) -> None:
    """Copy Spark's (id, features) factor rows into the rows of `target` they belong to."""
    rows = factors.toPandas()
    if len(rows):
        target[rows["id"].to_numpy(dtype=np.int64)] = np.stack(list(rows["features"]))
