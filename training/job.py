"""The nightly job: load, validate, index, fit, evaluate on a time split, gate, publish."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from recsys import __version__
from recsys.baselines import BuyAgain
from recsys.blend import SOURCES, Blender, Strategies
from recsys.candidates import ALSCandidates, popular_pool
from recsys.config import TIERS, Config
from recsys.errors import GateRefusedError, NotEnoughHistoryError
from recsys.experiments import experiment_to_dict
from recsys.ingest import EventLog
from recsys.jsonable import jsonable
from recsys.metrics import mean_metrics, ranking_metrics, relevance_codes
from recsys.modeldir import VersionWriter, clean_stale, current_path, prune, publish, read_manifest
from recsys.models.als import ALSModel
from recsys.models.base import FitData, Model
from recsys.models.content import ContentModel
from recsys.models.copurchase import CoPurchase
from recsys.models.neighbours import ItemNeighbours
from recsys.models.popularity import PopularityModel
from recsys.models.repurchase import RepurchaseModel
from recsys.models.segments import SegmentPopularity
from recsys.portraits import Portraits, portraits_of
from recsys.schema import EventType
from recsys.split import time_split
from training.dataset import Dataset, build_dataset, fit_data, subset, user_segments
from training.lock import RunLock
from training.steps import Steps

log = logging.getLogger(__name__)

# Evaluation targets: what counts as a relevant item in the held-out period.
TARGETS: dict[str, tuple[int, ...]] = {
    "conversion": (EventType.CART, EventType.PURCHASE),
    "all": (EventType.VIEW, EventType.CART, EventType.FAVOURITE, EventType.PURCHASE),
}
# What the evaluation compares: the blend against the popularity (the gate's baseline) and the
# personal "buy again" baselines.
STRATEGIES = ("blend", "popular", "buy_again")


@dataclass
class Evaluation:
    """Metrics on the held-out period: metrics[target][strategy][metric] (at k)."""

    cut: int
    k: int
    users: dict[str, int]
    metrics: dict[str, dict[str, dict[str, float]]]
    gate_target: str
    # the blend's metrics by the users' portrait tier at the cut: by_tier[target][tier][metric]
    by_tier: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    tier_users: dict[str, dict[str, int]] = field(default_factory=dict)

    def gate_value(self, strategy: str, metric: str) -> float:
        """The gate's metric for a strategy on the gate's target."""
        return self.metrics[self.gate_target][strategy][metric]

    def format(self) -> str:
        """Return the metrics as a text table."""
        lines = [f"holdout evaluation (k={self.k}; users per target: {self.users})"]
        lines.append(f"  {'target':<11}{'strategy':<10}" + "".join(f"{m:>10}" for m in _SHOWN))
        for target, by_strategy in self.metrics.items():
            for strategy, values in by_strategy.items():
                cells = "".join(f"{values[m]:>10.4f}" for m in _SHOWN)
                lines.append(f"  {target:<11}{strategy:<10}{cells}")
        for target, by_tier in self.by_tier.items():
            lines.append(f"  blend on {target} targets by portrait tier (users):")
            for tier, values in by_tier.items():
                cells = "".join(f"{values[m]:>10.4f}" for m in _SHOWN)
                users = self.tier_users[target][tier]
                lines.append(f"    {tier:<11}{users:>7,} {cells}")
        return "\n".join(lines)


_SHOWN = ("recall", "ndcg", "precision", "hit_rate", "mrr")


@dataclass
class GateDecision:
    """Whether the new model may be published, and why."""

    passed: bool
    forced: bool
    metric: str
    value: float
    baseline: float
    previous: float | None
    message: str
    target: str | None = None
    holdout_days: float | None = None


@dataclass
class TrainResult:
    """What a run of the job did."""

    published: bool
    version: str | None
    path: Path | None
    evaluation: Evaluation | None
    gate: GateDecision | None
    timings: dict[str, float] = field(default_factory=dict)
    dataset: Dataset | None = None
    portraits: Portraits | None = None


def fit_models(
    data: FitData, config: Config, als_warm_start: np.ndarray | None = None
) -> dict[str, Model]:
    """Fit every enabled model; popularity always (it is the last fallback)."""
    cfg = config.models
    models: dict[str, Model] = {"popularity": PopularityModel(cfg.popularity).fit(data)}
    if cfg.als.enabled:
        als_config = cfg.als
        if als_warm_start is not None:
            als_config = dataclasses.replace(
                als_config, iterations=config.training.retrain_iterations
            )
        models["als"] = ALSModel(als_config, seed=config.seed).fit(data, als_warm_start)
    if cfg.neighbours.enabled:
        models["neighbours"] = ItemNeighbours(cfg.neighbours).fit(data)
    if cfg.copurchase.enabled:
        models["copurchase"] = CoPurchase(cfg.copurchase).fit(data)
    return fit_small_models(data, config, models)


def fit_small_models(data: FitData, config: Config, models: dict[str, Model]) -> dict[str, Model]:
    """Add the models that stay small whatever the log's size: repurchase, content, segments."""
    cfg = config.models
    if cfg.repurchase.enabled:
        models["repurchase"] = RepurchaseModel(cfg.repurchase).fit(data)
    if cfg.content.enabled:
        models["content"] = ContentModel(cfg.content).fit(data)
    if data.n_segments:
        models["segments"] = SegmentPopularity(cfg.popularity).fit(data)
    return models


def blender(models: dict[str, Model], data: FitData, config: Config) -> Blender:
    """Build the blend over fitted models."""
    strategies = Strategies.from_models(data.history, models, item_category=data.item_category)
    return Blender(strategies, config.blend)


# Fits every model on FitData; the Spark trainer passes its own (training/spark_train.py).
Fitter = Callable[[FitData, Config], dict[str, Model]]


def evaluate_holdout(
    dataset: Dataset, config: Config, steps: Steps, fit: Fitter | None = None
) -> tuple[Evaluation, dict[str, Model], Dataset, FitData]:
    """Fit on all but the last holdout_days, evaluate the blend and popularity on what followed."""
    cfg = config.training
    split = time_split(dataset.events.frame, cfg.holdout_days)
    train = subset(dataset, split.train, config)
    train_data = fit_data(train, config)
    steps.done("split")
    models = (fit or fit_models)(train_data, config)
    steps.done("fit on train split")
    blend = blender(models, train_data, config)
    buy_again = BuyAgain(train_data.history, blend.strategies.popularity)
    # Tiers as the portraits stood at the cut, to break the blend's metrics down by them.
    tier_of = portraits_of(train_data, config.portraits, now=split.cut).tier_codes
    by_tier: dict[str, dict[str, dict[str, float]]] = {}
    tier_users: dict[str, dict[str, int]] = {}

    test = split.test
    users = train.users.index(test["user"].to_numpy())
    items = relevance_codes(train.items.index(test["item"].to_numpy()), test["item"].to_numpy())
    events = test["event"].to_numpy()
    rng = np.random.default_rng(config.seed)
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    counts: dict[str, int] = {}
    for target, kinds in TARGETS.items():
        mask = np.isin(events, kinds) & (users >= 0)
        if not mask.any():
            continue
        order = np.argsort(users[mask], kind="stable")
        t_users, t_items = users[mask][order], items[mask][order]
        eval_users, starts = np.unique(t_users, return_index=True)
        relevant = np.split(t_items, starts[1:])
        if len(eval_users) > cfg.max_eval_users:
            pick = np.sort(rng.choice(len(eval_users), cfg.max_eval_users, replace=False))
            eval_users = eval_users[pick]
            relevant = [relevant[i] for i in pick]
        counts[target] = len(eval_users)
        metrics[target] = {}
        for strategy in STRATEGIES:
            only = None if strategy == "blend" else strategy
            lists = np.full((len(eval_users), cfg.k), -1, dtype=np.int64)
            for row, user in enumerate(eval_users):
                if strategy == "buy_again":
                    found = buy_again.rank(int(user), cfg.k)
                else:
                    found = blend.rank(int(user), split.cut, cfg.k, only=only).items
                lists[row, : len(found)] = found
            per_user = ranking_metrics(lists, relevant, len(train.items), cfg.k)
            metrics[target][strategy] = mean_metrics(per_user)
            if strategy == "blend":
                tiers = tier_of[eval_users]
                by_tier[target], tier_users[target] = {}, {}
                for code in np.unique(tiers).tolist():
                    mask = tiers == code
                    by_tier[target][TIERS[code]] = mean_metrics(
                        {name: values[mask] for name, values in per_user.items()}
                    )
                    tier_users[target][TIERS[code]] = int(mask.sum())
    steps.done("evaluate")
    gate_target = "conversion" if "conversion" in metrics else "all"
    evaluation = Evaluation(
        cut=split.cut,
        k=cfg.k,
        users=counts,
        metrics=metrics,
        gate_target=gate_target,
        by_tier=by_tier,
        tier_users=tier_users,
    )
    return evaluation, models, train, train_data


def decide(
    evaluation: Evaluation | None, previous: float | None, config: Config, force: bool
) -> GateDecision:
    """Pass the model unless it is below popularity or too far below the published model."""
    cfg = config.training
    metric = f"{cfg.gate_metric}@{cfg.k}"
    if evaluation is None or not evaluation.metrics:
        return GateDecision(
            passed=True,
            forced=force,
            metric=metric,
            value=float("nan"),
            baseline=float("nan"),
            previous=previous,
            message="no held-out users with history in the training period: gate skipped",
        )
    value = evaluation.gate_value("blend", cfg.gate_metric)
    baseline = evaluation.gate_value("popular", cfg.gate_metric)
    reasons = []
    if value < baseline:
        reasons.append(f"{metric} {value:.4f} is below the popularity baseline {baseline:.4f}")
    floor = None if previous is None else previous * (1 - cfg.tolerance)
    if floor is not None and value < floor:
        reasons.append(
            f"{metric} {value:.4f} is more than {cfg.tolerance:.0%} below the published "
            f"model's {previous:.4f}"
        )
    target = evaluation.gate_target
    if reasons and not force:
        message = f"gate refused on {target} targets: " + "; ".join(reasons)
        return GateDecision(
            False, False, metric, value, baseline, previous, message, target, cfg.holdout_days
        )
    if reasons:
        message = "gate overridden by --force: " + "; ".join(reasons)
    else:
        message = (
            f"gate passed on {target} targets: {metric} {value:.4f} >= baseline {baseline:.4f}"
        )
        if previous is not None:
            message += f" and within {cfg.tolerance:.0%} of the published {previous:.4f}"
    return GateDecision(
        True,
        force and bool(reasons),
        metric,
        value,
        baseline,
        previous,
        message,
        target,
        cfg.holdout_days,
    )


def train(
    config: Config,
    *,
    out: Path | None = None,
    force: bool = False,
    on_error: str | None = None,
    fit: Fitter | None = None,
    load: Callable[..., EventLog] | None = None,
) -> TrainResult:
    """Run the nightly job; publish a new version unless the gate refuses (GateRefusedError).

    `fit` replaces the single-machine fitting and `load` the event loader (the Spark
    trainer's); everything else, the holdout evaluation and the gate included, is the same job.
    """
    root = Path(out) if out is not None else config.output.models
    steps = Steps()
    with RunLock(root):
        clean_stale(root)
        dataset = build_dataset(config, on_error=on_error, load=load)
        steps.merge(dataset.timings)
        evaluation: Evaluation | None = None
        models: dict[str, Model] | None = None
        train_set: Dataset | None = None
        train_data: FitData | None = None
        try:
            evaluation, models, train_set, train_data = evaluate_holdout(
                dataset, config, steps, fit
            )
        except NotEnoughHistoryError as exc:
            log.warning("holdout evaluation skipped: %s", exc)
        target = evaluation.gate_target if evaluation is not None else None
        previous = _published_metric(root, config, target)
        gate = decide(evaluation, previous, config, force)
        log.info("%s", gate.message)
        if not gate.passed:
            raise GateRefusedError(
                f"{root}: {gate.message}; the published model stays current "
                "(pass --force to publish anyway)"
            )
        if config.training.retrain_on_all or models is None:
            published, data = dataset, fit_data(dataset, config)
            if fit is not None:
                models = fit(data, config)
            else:
                warm = _warm_start(models, train_set, dataset)
                models = fit_models(data, config, als_warm_start=warm)
            steps.done("fit on all events")
        else:
            # The evaluated models are published as they are, with their own id maps.
            assert train_set is not None and train_data is not None
            published, data = train_set, train_data
        portraits = portraits_of(data, config.portraits)
        steps.done("portraits")
        log.info("%s", portraits.format_summary())
        path = _write(root, config, published, data, models, portraits, evaluation, gate, steps)
        publish(root, path.name)
        deleted = prune(root, config.training.keep_versions)
        if deleted:
            log.info("deleted old versions %s", ", ".join(deleted))
        steps.done("publish")
    return TrainResult(
        published=True,
        version=path.name,
        path=path,
        evaluation=evaluation,
        gate=gate,
        timings=steps.timings,
        dataset=dataset,
        portraits=portraits,
    )


def _warm_start(
    models: dict[str, Model] | None, train: Dataset | None, full: Dataset
) -> np.ndarray | None:
    """The evaluation fit's ALS item factors, re-indexed to the full data's items."""
    if models is None or train is None or "als" not in models:
        return None
    factors = models["als"].item_factors_  # type: ignore[attr-defined]
    start = np.zeros((len(full.items), factors.shape[1]), dtype=np.float32)
    where = full.items.index(train.items.ids)
    start[where[where >= 0]] = factors[where >= 0]
    return start


def _published_metric(root: Path, config: Config, target: str | None) -> float | None:
    try:
        manifest = read_manifest(current_path(root))
    except Exception:  # no published model yet, or one we cannot read: nothing to compare to
        return None
    gate = manifest.get("gate") or {}
    value = gate.get("value")
    # Only numbers measured the same way compare: metric and k, target, holdout length.
    same = (
        gate.get("metric") == f"{config.training.gate_metric}@{config.training.k}"
        and gate.get("target") == target
        and gate.get("holdout_days") == config.training.holdout_days
    )
    if same and isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _write(
    root: Path,
    config: Config,
    dataset: Dataset,
    data: FitData,
    models: dict[str, Model],
    portraits: Portraits,
    evaluation: Evaluation | None,
    gate: GateDecision,
    steps: Steps,
) -> Path:
    with VersionWriter(root) as writer:
        writer.add_table("users", dataset.users.to_table())
        writer.add_table("items", dataset.items.to_table())
        writer.add_arrays("history", dataset.history.arrays())
        writer.add_arrays(
            "item_attributes",
            {
                "category": data.item_category,
                "brand": data.item_brand,
                "price": data.item_price,
                "available": data.item_available,
                "first_seen": data.item_first_seen,
            },
        )
        categories = data.extra.get("category_ids")
        if categories is not None and len(categories):
            writer.add_table("categories", pa.table({"id": pa.array(list(categories))}))
        segment_users, segment_codes, labels = user_segments(dataset, config)
        if len(labels):
            ids = pa.array(
                segment_users, type=pa.int64() if dataset.users.dtype == "int64" else pa.string()
            )
            writer.add_table("user_segments", pa.table({"id": ids, "segment": segment_codes}))
            writer.add_table("segments", pa.table({"label": pa.array(list(labels), pa.string())}))
        for name, model in models.items():
            writer.add_arrays(name, model.arrays())
        writer.add_arrays("portrait_codes", portraits.arrays())
        ids = dataset.users.to_table().column("id")
        writer.add_table(
            "portraits",
            pa.Table.from_pandas(portraits.frame, preserve_index=False).add_column(0, "id", ids),
        )
        steps.done("write")
        als, popularity = models.get("als"), models["popularity"]
        if isinstance(als, ALSModel) and isinstance(popularity, PopularityModel):
            # Serving reads every user's ALS candidates instead of searching them per call.
            candidates = ALSCandidates.build(
                als,
                data.matrix,
                popular_pool(popularity, config.blend.personal_pool),
                config.blend.personal_candidates,
                threads=config.models.als.threads,
            )
            writer.add_arrays("als_candidates", candidates.arrays())
            steps.done("ALS candidates")
        manifest = {
            "engine_version": __version__,
            "config": config.to_dict(),
            "config_hash": config.hash(),
            "seed": config.seed,
            "inputs": _inputs(config),
            "counts": {
                "events": dataset.events.report.to_dict(),
                "items": dataset.catalogue.report.to_dict() if dataset.catalogue else None,
                "users": (
                    dataset.users_attributes.report.to_dict() if dataset.users_attributes else None
                ),
                "matrix": dataset.matrix_summary.to_dict(),
                "n_users": len(dataset.users),
                "n_items": len(dataset.items),
            },
            "data_end": data.now,
            "timezone": config.timezone,
            "models": {
                # segment popularity shares the popularity settings
                name: dataclasses.asdict(getattr(config.models, name, config.models.popularity))
                for name in models
            },
            "serving": dataclasses.asdict(config.serving),
            "experiments": [experiment_to_dict(e) for e in config.experiments],
            "blend": dataclasses.asdict(config.blend) | {"sources": list(SOURCES)},
            "metrics": dataclasses.asdict(evaluation) if evaluation else None,
            "gate": dataclasses.asdict(gate),
            "forced": gate.forced,
            "timings": dict(steps.timings),
        }
        return writer.commit(jsonable(manifest))


def _inputs(config: Config) -> list[dict[str, Any]]:
    paths = list(config.events.path)
    if config.items is not None:
        paths += list(config.items.path)
    if config.users is not None:
        paths += list(config.users.path)
    return [{"path": str(p), "bytes": p.stat().st_size, "sha256": _sha256(p)} for p in paths]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
