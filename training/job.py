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
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys import __version__
from recsys.baselines import Baseline, BuyAgain, MostPopular, RecentItems
from recsys.blend import SOURCES, Blender, Strategies
from recsys.candidates import ALSCandidates, popular_pool
from recsys.config import TIERS, Config, ServingConfig
from recsys.errors import GateRefusedError, ModelDirError, NotEnoughHistoryError
from recsys.experiments import experiment_to_dict
from recsys.ids import IdMap
from recsys.ingest import EventLog
from recsys.jsonable import jsonable
from recsys.metrics import bootstrap_interval, mean_metrics, ranking_metrics, relevance_codes
from recsys.modeldir import (
    VersionContent,
    clean_stale,
    current_path,
    current_version,
    prune,
    publish,
    read_manifest,
)
from recsys.models.als import ALSModel
from recsys.models.base import FitData, Model
from recsys.models.content import ContentModel
from recsys.models.copurchase import CoPurchase
from recsys.models.neighbours import ItemNeighbours
from recsys.models.popularity import PopularityModel
from recsys.models.repurchase import RepurchaseModel
from recsys.models.segments import SegmentPopularity
from recsys.models.tifu import TifuKNN
from recsys.portraits import Portraits, portraits_of
from recsys.ranker import LearnedRanker
from recsys.schema import EventType
from recsys.served import ServedModel
from recsys.split import time_split
from training.dataset import Dataset, build_dataset, fit_data, subset, user_segments
from training.lock import RunLock
from training.ranking import RankerFit, fit_ranker
from training.scoring import per_user, served_lists
from training.steps import Steps

log = logging.getLogger(__name__)

# Evaluation targets: what counts as a relevant item in the held-out period.
TARGETS: dict[str, tuple[int, ...]] = {
    "conversion": (EventType.CART, EventType.PURCHASE),
    "all": (EventType.VIEW, EventType.CART, EventType.FAVOURITE, EventType.PURCHASE),
}
# The baselines the served engine must not lose to: most popular, the user's own purchases
# again, and (for browse logs) the user's own recent items.
GATE_BASELINES = ("popular", "buy_again", "recent_items")
# What the evaluation compares: the engine as served, the hand-weighted blend alone, baselines.
STRATEGIES = ("engine", "blend", *GATE_BASELINES)


@dataclass
class RuleCheck:
    """One tier rule (a lead strategy's share of a tier's lists), with and without it."""

    tier: str
    lead: str
    share: float
    users: int
    # the gate's metric on that tier's held-out users, with the rule and without it.
    with_rule: float
    without_rule: float
    kept: bool
    note: str
    # 95% paired bootstrap interval of (with - without) over the tier's users.
    low: float = float("nan")
    high: float = float("nan")
    # the rule's own target (RULE_TARGETS), with the rule and without it.
    target: str = ""
    target_with: float = float("nan")
    target_without: float = float("nan")


@dataclass
class Evaluation:
    """Metrics on the held-out period: metrics[target][strategy][metric] (at k).

    "engine" is what Recommender.recommend serves (tier leads, chain, filters, ranker);
    "blend" the hand-weighted blend alone.
    """

    cut: int
    k: int
    users: dict[str, int]
    metrics: dict[str, dict[str, dict[str, float]]]
    gate_target: str
    # the engine's metrics by the users' portrait tier at the cut: by_tier[target][tier][metric]
    by_tier: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    tier_users: dict[str, dict[str, int]] = field(default_factory=dict)
    # each tier rule's check on the gate's target, and the tier leads kept for serving.
    rules: list[RuleCheck] = field(default_factory=list)
    tier_leads: dict[str, dict[str, float]] = field(default_factory=dict)
    # the learned ranker's check against the blend (empty: no ranker trained).
    ranker: dict[str, Any] = field(default_factory=dict)

    def gate_value(self, strategy: str, metric: str) -> float:
        """The gate's metric for a strategy on the gate's target."""
        return self.metrics[self.gate_target][strategy][metric]

    def format(self) -> str:
        """Return the metrics as a text table."""
        lines = [f"holdout evaluation (k={self.k}; users per target: {self.users})"]
        lines.append(f"  {'target':<11}{'strategy':<13}" + "".join(f"{m:>10}" for m in _SHOWN))
        for target, by_strategy in self.metrics.items():
            for strategy, values in by_strategy.items():
                cells = "".join(f"{values[m]:>10.4f}" for m in _SHOWN)
                lines.append(f"  {target:<11}{strategy:<13}{cells}")
        for target, by_tier in self.by_tier.items():
            lines.append(f"  engine on {target} targets by portrait tier (users):")
            for tier, values in by_tier.items():
                cells = "".join(f"{values[m]:>10.4f}" for m in _SHOWN)
                users = self.tier_users[target][tier]
                lines.append(f"    {tier:<11}{users:>7,} {cells}")
        if self.ranker:
            lines.append(f"  {self.ranker['message']}")
        if self.rules:
            lines.append(f"  tier rules on {self.gate_target} targets (ndcg@{self.k}):")
            for rule in self.rules:
                word = "kept" if rule.kept else "off"
                lines.append(
                    f"    {rule.tier:<11}{rule.lead:<21}{rule.share:>5.0%} {rule.users:>6,} users"
                    f"  with {rule.with_rule:.4f}  without {rule.without_rule:.4f}"
                    f"  gain [{rule.low:+.4f}, {rule.high:+.4f}]  {word}"
                    + (f" ({rule.note})" if rule.note else "")
                    + (
                        f"; {rule.target}: {rule.target_with:.4f} with, "
                        f"{rule.target_without:.4f} without"
                        if rule.target
                        else ""
                    )
                )
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
    # the baseline compared with: the best of training.gate_baselines on the gate's target.
    baseline_name: str | None = None


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
    """Add the models every trainer fits on one machine: repurchase, content, baskets, segments."""
    cfg = config.models
    if cfg.repurchase.enabled:
        models["repurchase"] = RepurchaseModel(cfg.repurchase).fit(data)
    if cfg.content.enabled:
        models["content"] = ContentModel(cfg.content).fit(data)
    if cfg.tifu.enabled:
        models["tifu"] = TifuKNN(cfg.tifu).fit(data)
    if data.n_segments:
        models["segments"] = SegmentPopularity(cfg.popularity).fit(data)
    return models


def blender(models: dict[str, Model], data: FitData, config: Config) -> Blender:
    """Build the blend over fitted models."""
    strategies = Strategies.from_models(data.history, models, item_category=data.item_category)
    return Blender(strategies, config.blend)


# Fits every model on FitData; the Spark trainer passes its own (training/spark/spark_train.py).
Fitter = Callable[[FitData, Config], dict[str, Model]]


def served_model(
    config: Config,
    dataset: Dataset,
    data: FitData,
    models: dict[str, Model],
    users: np.ndarray | None = None,
    serving: ServingConfig | None = None,
    ranker: LearnedRanker | None = None,
) -> ServedModel:
    """The model serving would load had these fitted models been published (in memory).

    `users` limits the stored ALS candidates to the users that will be asked; `serving`
    replaces the configured serving settings.
    """
    portraits = portraits_of(data, config.portraits)
    content = version_content(
        config, dataset, data, models, portraits, candidate_users=users, serving=serving,
        ranker=ranker,
    )  # fmt: skip
    return ServedModel.from_files(content)


@dataclass
class _Asked:
    """The held-out users of one target: indices, ids and what they converted on."""

    users: np.ndarray
    ids: list[Any]
    relevant: list[np.ndarray]


def evaluate_holdout(
    dataset: Dataset, config: Config, steps: Steps, fit: Fitter | None = None
) -> tuple[Evaluation, dict[str, Model], Dataset, FitData, LearnedRanker | None]:
    """Fit on all but the last holdout_days; score what serving would answer on what followed.

    The tier rules are checked first (each on its tier's users, with and without it), and the
    engine is scored with the rules that earned their place: `Evaluation.tier_leads`.
    """
    cfg = config.training
    split = time_split(dataset.events.frame, cfg.holdout_days)
    train = subset(dataset, split.train, config)
    train_data = fit_data(train, config)
    steps.done("split")
    asked = _held_out_users(train, split.test, config)
    gate_target = "conversion" if "conversion" in asked else "all"
    trained = None
    if config.ranker.enabled and gate_target in asked:
        trained = fit_ranker(dataset, config, split.cut, fit or fit_models, served_model)
        steps.done("ranker")
    if fit is None and cfg.warm_start_holdout and trained is not None and trained.warm is not None:
        # The ranker's newest period was fitted on the days before its labels: its ALS item
        # factors are a head start that has seen nothing of the holdout.
        items, factors = trained.warm
        models = fit_models(train_data, config, als_warm_start=_reindexed(factors, items, train))
    else:
        models = (fit or fit_models)(train_data, config)
    steps.done("fit on train split")
    everyone = _everyone_held_out(asked).astype(np.int64)
    served = served_model(config, train, train_data, models, users=everyone)
    ranker_check: dict[str, Any] = {}
    if trained is not None:
        served, ranker_check = _choose_ranker(served, trained, asked[gate_target], split.cut,
                                              config)  # fmt: skip
        log.info("%s", ranker_check["message"])
    rules: list[RuleCheck] = []
    if cfg.check_rules and gate_target in asked:
        served, rules = check_rules(served, asked[gate_target], split.cut, config)
    steps.done("check tier rules")
    baselines: dict[str, Baseline] = {
        "popular": MostPopular(served.blender.strategies.popularity),
        "buy_again": BuyAgain(train_data.history, served.blender.strategies.popularity),
        "recent_items": RecentItems(train_data.history),
    }
    n_items = len(train.items)
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    counts: dict[str, int] = {}
    by_tier: dict[str, dict[str, dict[str, float]]] = {}
    tier_users: dict[str, dict[str, int]] = {}
    # A user held out on several targets gets one served list, asked once.
    engine = _union_lists(served, asked, everyone, cfg.k, split.cut)
    for target, who in asked.items():
        counts[target] = len(who.users)
        metrics[target] = {}
        for strategy in STRATEGIES:
            if strategy == "engine":
                lists = engine[np.searchsorted(everyone, who.users)]
            else:
                lists = np.full((len(who.users), cfg.k), -1, dtype=np.int64)
                for row, user in enumerate(who.users.tolist()):
                    if strategy == "blend":
                        found = served.blender.rank(user, split.cut, cfg.k).items
                    else:
                        found = baselines[strategy].rank(user, cfg.k)
                    lists[row, : len(found)] = found
            values = ranking_metrics(lists, who.relevant, n_items, cfg.k)
            metrics[target][strategy] = mean_metrics(values)
            if strategy == "engine":
                tiers = served.user_tier[who.users]
                by_tier[target], tier_users[target] = {}, {}
                for code in np.unique(tiers).tolist():
                    mask = tiers == code
                    name = TIERS[code] if code >= 0 else "none"
                    by_tier[target][name] = mean_metrics(
                        {metric: v[mask] for metric, v in values.items()}
                    )
                    tier_users[target][name] = int(mask.sum())
    steps.done("evaluate")
    evaluation = Evaluation(
        cut=split.cut,
        k=cfg.k,
        users=counts,
        metrics=metrics,
        gate_target=gate_target,
        by_tier=by_tier,
        tier_users=tier_users,
        rules=rules,
        tier_leads=served.serving.tier_leads,
        ranker=ranker_check,
    )
    return evaluation, models, train, train_data, served.ranker


def _everyone_held_out(asked: dict[str, _Asked]) -> np.ndarray:
    """Every user held out on any target, sorted."""
    return np.unique(np.concatenate([a.users for a in asked.values()] or [np.zeros(0, np.int64)]))


def _union_lists(
    served: ServedModel, asked: dict[str, _Asked], users: np.ndarray, k: int, now: int
) -> np.ndarray:
    """The served top-k of `users` (_everyone_held_out: every held-out user), a row each."""
    ids: dict[int, Any] = {}
    for who in asked.values():
        ids.update(zip(who.users.tolist(), who.ids, strict=True))
    return served_lists(served, users, [ids[u] for u in users.tolist()], k, now)


def _held_out_users(train: Dataset, test: pd.DataFrame, config: Config) -> dict[str, _Asked]:
    """Per target, the known users who did something of it after the cut (a seeded sample)."""
    cfg = config.training
    users = train.users.index(test["user"].to_numpy())
    items = relevance_codes(train.items.index(test["item"].to_numpy()), test["item"].to_numpy())
    events = test["event"].to_numpy()
    rng = np.random.default_rng(config.seed)
    asked: dict[str, _Asked] = {}
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
        eval_users = eval_users.astype(np.int64)
        asked[target] = _Asked(eval_users, train.users.ids[eval_users].tolist(), relevant)
    return asked


def _choose_ranker(
    served: ServedModel, trained: RankerFit, asked: _Asked, now: int, config: Config
) -> tuple[ServedModel, dict[str, Any]]:
    """Serve the ranker only if the served lists with it are not worse than with the blend."""
    cfg = config.training
    n_items = len(served.items)
    scores = {}
    for name, ranker in (("ranker", trained.ranker), ("blend", None)):
        lists = served_lists(served.with_ranker(ranker), asked.users, asked.ids, cfg.k, now)
        scores[name] = float(np.nanmean(per_user(lists, asked.relevant, n_items, cfg.k,
                                                 cfg.gate_metric)))  # fmt: skip
    better = scores["ranker"] >= scores["blend"] * (1 + config.ranker.min_gain)
    chosen = better or config.ranker.serve == "always"
    metric = f"{cfg.gate_metric}@{cfg.k}"
    word = "serves" if better else "serves (ranker.serve = always)" if chosen else (
        "not served: the blend serves")  # fmt: skip
    message = (
        f"learned ranker ({trained.ranker.trees} trees, trained on {trained.users:,} users) "
        f"{word}: {metric} {scores['ranker']:.4f} with it, {scores['blend']:.4f} with the blend"
    )
    check = {
        "served": chosen,
        "trees": trained.ranker.trees,
        "users": trained.users,
        "rows": trained.rows,
        "positives": trained.positives,
        "seconds": trained.seconds,
        "metric": metric,
        "with_ranker": scores["ranker"],
        "with_blend": scores["blend"],
        "message": message,
    }
    return served.with_ranker(trained.ranker if chosen else None), check


# What each retention rule exists for, scored beside the gate's metric on its tier's users:
# win-back (repurchase leads) on the share of the tier whose list holds something they then
# bought; discovery (favourite categories, segment and new arrivals) on NDCG of what they then
# bought that they had never bought before.
# lead -> (label, metric, scored on items new to the customer only)
RULE_TARGETS: dict[str, tuple[str, str, bool]] = {
    "repurchase": ("bought from the list (hit rate)", "hit_rate", False),
    "favourite_categories": ("items new to them (ndcg)", "ndcg", True),
    "segment_popular": ("items new to them (ndcg)", "ndcg", True),
    "new_item": ("items new to them (ndcg)", "ndcg", True),
}


def check_rules(
    served: ServedModel, asked: _Asked, now: int, config: Config
) -> tuple[ServedModel, list[RuleCheck]]:
    """Score each tier rule on its tier's users with and without it; keep it only if the lists
    with it are not worse (and enough users were scored). Returns the model serving the kept
    rules, and every check."""
    cfg = config.training
    tiers = served.user_tier[asked.users]
    leads = {tier: dict(rules) for tier, rules in served.serving.tier_leads.items() if rules}
    checks: list[RuleCheck] = []
    for tier, rules in list(leads.items()):
        code = TIERS.index(tier)
        rows = np.flatnonzero(tiers == code)
        who = _Asked(
            asked.users[rows],
            [asked.ids[r] for r in rows.tolist()],
            [asked.relevant[r] for r in rows.tolist()],
        )
        new_to_them = _not_bought_before(served, who)
        # The tier's lists as its rules stand now; after each check the rules standing next
        # are the ones just scored (with the rule, or without it), so each is scored once.
        current = _rules_lists(served, leads, who, now, config)
        for lead, share in list(rules.items()):
            without = {**leads, tier: {k: v for k, v in leads[tier].items() if k != lead}}
            with_lists, without_lists = current, _rules_lists(served, without, who, now, config)
            n_items = len(served.items)
            with_values = per_user(with_lists, who.relevant, n_items, cfg.k, cfg.gate_metric)
            without_values = per_user(without_lists, who.relevant, n_items, cfg.k, cfg.gate_metric)
            with_rule, without_rule = _mean(with_values), _mean(without_values)
            gain = bootstrap_interval(with_values - without_values, seed=config.seed)
            enough = len(rows) >= cfg.rule_min_users
            kept = enough and with_rule >= without_rule
            if not kept:
                leads, current = without, without_lists
            note = "" if enough else f"under {cfg.rule_min_users} users to score it on"
            label, metric, new_only = RULE_TARGETS.get(lead, ("", "", False))
            target_with = target_without = float("nan")
            if metric:
                relevant = new_to_them if new_only else who.relevant
                target_with = _mean(per_user(with_lists, relevant, n_items, cfg.k, metric))
                target_without = _mean(per_user(without_lists, relevant, n_items, cfg.k, metric))
            checks.append(
                RuleCheck(
                    tier,
                    lead,
                    share,
                    len(rows),
                    with_rule,
                    without_rule,
                    kept,
                    note,
                    low=gain.low,
                    high=gain.high,
                    target=label,
                    target_with=target_with,
                    target_without=target_without,
                )
            )
    final = {tier: rules for tier, rules in leads.items() if rules}
    final |= {tier: {} for tier in served.serving.tier_leads if tier not in final}
    return served.with_serving(_with_leads(served.serving, final)), checks


def _not_bought_before(served: ServedModel, who: _Asked) -> list[np.ndarray]:
    """Each user's relevant items they had never bought before the cut."""
    history = served.blender.strategies.history
    out = []
    for user, relevant in zip(who.users.tolist(), who.relevant, strict=True):
        items, events, _times = history.of(user)
        bought = items[events == EventType.PURCHASE]
        out.append(relevant[~np.isin(relevant, bought)])
    return out


def _rules_lists(
    served: ServedModel,
    leads: dict[str, dict[str, float]],
    who: _Asked,
    now: int,
    config: Config,
) -> np.ndarray:
    """These users' served top-k lists under these tier rules."""
    model = served.with_serving(_with_leads(served.serving, leads))
    return served_lists(model, who.users, who.ids, config.training.k, now)


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else float("nan")


def _with_leads(serving: ServingConfig, leads: dict[str, dict[str, float]]) -> ServingConfig:
    return dataclasses.replace(serving, tier_leads={t: dict(r) for t, r in leads.items()})


def decide(
    evaluation: Evaluation | None, previous: float | None, config: Config, force: bool
) -> GateDecision:
    """Pass the model unless its served answers lose to a baseline or fall too far below the
    published model's."""
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
    value = evaluation.gate_value("engine", cfg.gate_metric)
    scored = evaluation.metrics[evaluation.gate_target]
    named = [b for b in cfg.gate_baselines if b in scored]
    best = max(named, key=lambda b: scored[b][cfg.gate_metric])
    baseline = scored[best][cfg.gate_metric]
    reasons = []
    if value < baseline:
        reasons.append(
            f"{metric} {value:.4f} of the answers as served is below the {best} baseline's "
            f"{baseline:.4f}"
        )
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
            False, False, metric, value, baseline, previous, message, target, cfg.holdout_days,
            best,
        )  # fmt: skip
    if reasons:
        message = "gate overridden by --force: " + "; ".join(reasons)
    else:
        message = (
            f"gate passed on {target} targets: {metric} {value:.4f} as served >= the best "
            f"baseline ({best}) {baseline:.4f}"
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
        best,
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
        config = published_id_types(config, root)
        dataset = build_dataset(config, on_error=on_error, load=load)
        steps.merge(dataset.timings)
        evaluation: Evaluation | None = None
        models: dict[str, Model] | None = None
        train_set: Dataset | None = None
        train_data: FitData | None = None
        ranker: LearnedRanker | None = None
        try:
            evaluation, models, train_set, train_data, ranker = evaluate_holdout(
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
        published, data, models = final_models(
            dataset, config, models, train_set, train_data, steps, fit
        )
        portraits = portraits_of(data, config.portraits)
        steps.done("portraits")
        log.info("%s", portraits.format_summary())
        serving = served_settings(config, evaluation)
        path = _write(
            root, config, published, data, models, portraits, evaluation, gate, steps, serving,
            ranker,
        )  # fmt: skip
        serve_check(path)
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


def published_id_types(config: Config, root: Path) -> Config:
    """The config with "auto" id types set to those of the published model, if any: the shop's
    pages call with ids of that type, so one junk id must be a rejected row, not turn every id
    into text (and 17850 into "17850") in the next version."""
    src = config.events
    if "auto" not in (src.user_id_type, src.item_id_type) or current_version(root) is None:
        return config
    types: dict[str, Any] = {}
    for name, key in (("users", "user_id_type"), ("items", "item_id_type")):
        if getattr(src, key) != "auto":
            continue
        try:
            schema = pq.read_schema(current_path(root) / f"{name}.parquet")
        except (OSError, ModelDirError, pa.ArrowException):
            continue  # an unreadable published version is replaced, whatever its types
        kind = "int" if pa.types.is_integer(schema.field("id").type) else "text"
        types[key] = kind
        log.info("%s ids read as %s, as in the published model", name[:-1], kind)
    return dataclasses.replace(config, events=dataclasses.replace(src, **types))


def serve_check(path: Path) -> None:
    """Load a written version with serving's own loader (which answers once with it) before
    CURRENT may name it: a version serving cannot load or answer from is never published."""
    try:
        ServedModel.load(path)
    except Exception as exc:
        raise ModelDirError(
            f"{path}: the new version cannot be served ({type(exc).__name__}: {exc}); CURRENT "
            "still names the version before it"
        ) from exc


def final_models(
    dataset: Dataset,
    config: Config,
    models: dict[str, Model] | None,
    train_set: Dataset | None,
    train_data: FitData | None,
    steps: Steps,
    fit: Fitter | None = None,
) -> tuple[Dataset, FitData, dict[str, Model]]:
    """The models to publish after the holdout evaluation: refitted on every event (ALS warm
    started from the evaluation's fit), or the evaluated ones as they are."""
    if config.training.retrain_on_all or models is None or train_set is None:
        data = fit_data(dataset, config)
        if fit is not None:
            models = fit(data, config)
        else:
            warm = _warm_start(models, train_set, dataset)
            models = fit_models(data, config, als_warm_start=warm)
        steps.done("fit on all events")
        return dataset, data, models
    # The evaluated models are published as they are, with their own id maps.
    assert train_data is not None
    return train_set, train_data, models


def served_settings(config: Config, evaluation: Evaluation | None) -> ServingConfig:
    """The serving settings to publish: the tier rules that earned their place."""
    if evaluation is not None and evaluation.rules:
        return _with_leads(config.serving, evaluation.tier_leads)
    return config.serving


def nightly_model(
    dataset: Dataset, config: Config, steps: Steps, users: np.ndarray | None = None
) -> tuple[ServedModel, Evaluation | None, Dataset, FitData, dict[str, Model]]:
    """What the nightly job would publish from this dataset, in memory, its evaluation (rules
    checked and ranker chosen on its own holdout; the gate is not applied), what the published
    models index, and the fitted models."""
    evaluation, models, train_set, train_data, ranker = None, None, None, None, None
    try:
        evaluation, models, train_set, train_data, ranker = evaluate_holdout(dataset, config, steps)
    except NotEnoughHistoryError as exc:
        log.warning("holdout evaluation skipped: %s", exc)
    published, data, models = final_models(dataset, config, models, train_set, train_data, steps)
    served = served_model(
        config, published, data, models, users=users,
        serving=served_settings(config, evaluation), ranker=ranker,
    )  # fmt: skip
    return served, evaluation, published, data, models


def _warm_start(
    models: dict[str, Model] | None, train: Dataset | None, full: Dataset
) -> np.ndarray | None:
    """The evaluation fit's ALS item factors, re-indexed to the full data's items."""
    if models is None or train is None or "als" not in models:
        return None
    return _reindexed(models["als"].item_factors_, train.items, full)  # type: ignore[attr-defined]


def _reindexed(factors: np.ndarray, items: IdMap, data: Dataset) -> np.ndarray:
    """ALS item factors of `items`, re-indexed to `data`'s items (zeros for items not there)."""
    start = np.zeros((len(data.items), factors.shape[1]), dtype=np.float32)
    where = data.items.index(items.ids)
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


def version_content(
    config: Config,
    dataset: Dataset,
    data: FitData,
    models: dict[str, Model],
    portraits: Portraits,
    steps: Steps | None = None,
    candidate_users: np.ndarray | None = None,
    serving: ServingConfig | None = None,
    ranker: LearnedRanker | None = None,
) -> VersionContent:
    """Everything a model version holds, in memory: what `_write` publishes and what the
    evaluation hands to serving's loader, so both serve the same model.

    `candidate_users` limits the stored ALS candidates to those users (an evaluation asks a
    sample); None stores them for everyone.
    """
    content = VersionContent()
    content.add_table("users", dataset.users.to_table())
    content.add_table("items", dataset.items.to_table())
    content.add_arrays("history", dataset.history.arrays())
    content.add_arrays(
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
        content.add_table("categories", pa.table({"id": pa.array(list(categories))}))
    segment_users, segment_codes, labels = user_segments(dataset, config)
    if len(labels):
        ids = pa.array(
            segment_users, type=pa.int64() if dataset.users.dtype == "int64" else pa.string()
        )
        content.add_table("user_segments", pa.table({"id": ids, "segment": segment_codes}))
        content.add_table("segments", pa.table({"label": pa.array(list(labels), pa.string())}))
    for name, model in models.items():
        content.add_arrays(name, model.arrays())
    content.add_arrays("portrait_codes", portraits.arrays())
    ids = dataset.users.to_table().column("id")
    content.add_table(
        "portraits",
        pa.Table.from_pandas(portraits.frame, preserve_index=False).add_column(0, "id", ids),
    )
    if steps is not None:
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
            users=candidate_users,
        )
        content.add_arrays("als_candidates", candidates.arrays())
        if steps is not None:
            steps.done("ALS candidates")
    if ranker is not None:
        # LightGBM's own text format; its sha256 goes into the manifest like every file's.
        content.add_text("ranker.txt", ranker.to_text())
    content.fields = {
        "engine_version": __version__,
        "config": config.to_dict(),
        "config_hash": config.hash(),
        "seed": config.seed,
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
        "serving": dataclasses.asdict(serving or config.serving),
        "experiments": [experiment_to_dict(e) for e in config.experiments],
        "blend": dataclasses.asdict(config.blend) | {"sources": list(SOURCES)},
    }
    content.fields = jsonable(content.fields)
    return content


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
    serving: ServingConfig | None = None,
    ranker: LearnedRanker | None = None,
) -> Path:
    content = version_content(
        config, dataset, data, models, portraits, steps, serving=serving, ranker=ranker
    )
    content.fields |= jsonable(
        {
            "inputs": _inputs(config),
            "metrics": dataclasses.asdict(evaluation) if evaluation else None,
            "gate": dataclasses.asdict(gate),
            "forced": gate.forced,
            "timings": dict(steps.timings),
        }
    )
    return content.write(root)


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
