"""Training the learned ranker: candidates and features at one cut, labels from what followed.

For a model fitted on the events before `cut`, the ranker is trained one period earlier: the
models are fitted on the events before `cut - label_days`, every part's candidates of the users
active in the label period are described as serving describes them (same exclusions and
filters), and each candidate is labelled by what the user did with it in the label period
(2: carted or bought, 1: viewed or saved, 0: nothing). The nightly gate then scores the ranker
on the period after `cut`, which it never saw.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from recsys.answer import new_picker
from recsys.config import Config
from recsys.errors import NotEnoughHistoryError
from recsys.fallback import ranker_candidates, ranker_features, ranks
from recsys.filters import Filters
from recsys.ids import IdMap
from recsys.metrics import relevance_codes
from recsys.models.als import ALSModel
from recsys.models.base import FitData, Model
from recsys.ranker import LearnedRanker
from recsys.schema import EventType
from recsys.served import ServedModel
from recsys.split import time_split
from training.dataset import Dataset, fit_data, subset

log = logging.getLogger(__name__)

_CONVERSIONS = (int(EventType.CART), int(EventType.PURCHASE))
# Fits every model on FitData (the job's fit_models, or the Spark trainer's).
Fitter = Callable[[FitData, Config], dict[str, Model]]
# Builds the in-memory served model of fitted models (the job's served_model).
Server = Callable[..., ServedModel]


@dataclass
class RankerFit:
    """A trained ranker and what it was trained on."""

    ranker: LearnedRanker
    users: int
    rows: int
    positives: int
    seconds: float
    label_start: int
    label_end: int
    # the newest label period's item ids and ALS item factors (None: no ALS), from which the
    # holdout's own fit may start.
    warm: tuple[IdMap, np.ndarray] | None = None


class _Period(NamedTuple):
    """What one label period gives the ranker's training set."""

    blocks: list[np.ndarray]  # feature rows, one block per user list
    labels: list[np.ndarray]
    groups: list[int]  # rows per user list
    start: int  # the period's first second (its models saw only what came before)
    asked: int  # users asked
    warm: tuple[IdMap, np.ndarray] | None  # its item ids and ALS item factors (None: no ALS)


def fit_ranker(
    dataset: Dataset, config: Config, cut: int, fit: Fitter, serve: Server
) -> RankerFit | None:
    """Train the ranker for models fitted before `cut` (None: too little to learn from).

    Each of `ranker.periods` label periods before the cut (newest first) adds its users'
    candidate lists to the training set, with models fitted on what came before it.
    """
    started = time.perf_counter()
    cfg = config.ranker
    label_days = cfg.label_days or config.training.holdout_days
    rng = np.random.default_rng(config.seed)
    blocks: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    groups: list[int] = []
    end, label_start = cut, cut
    # ranker.max_users is a budget over every period, newest first: on a large log the newest
    # period fills it, and older periods (a model fit each) are not needed.
    budget = cfg.max_users
    warm = None
    for period in range(cfg.periods):
        if budget <= 0:
            break
        period_started = time.perf_counter()
        found = _period_lists(dataset, config, end, label_days, fit, serve, rng, budget)
        if found is None:
            break
        log.info(
            "ranker label period %d of at most %d: %s users asked, %s lists with a positive "
            "in %.1fs",
            period + 1,
            cfg.periods,
            f"{found.asked:,}",
            f"{len(found.groups):,}",
            time.perf_counter() - period_started,
        )
        if period == 0:
            warm = found.warm
        label_start = found.start
        blocks += found.blocks
        labels += found.labels
        groups += found.groups
        budget -= found.asked
        end = label_start
    if len(groups) < 20:
        log.warning("ranker not trained: only %d users with a candidate they went on to use",
                    len(groups))  # fmt: skip
        return None
    # A fifth of the users, seeded, tell the boosting when to stop.
    valid = rng.random(len(groups)) < 0.2
    x_train, y_train, g_train = _stack(blocks, labels, groups, ~valid)
    x_valid, y_valid, g_valid = _stack(blocks, labels, groups, valid)
    ranker = LearnedRanker(cfg, seed=config.seed).fit(
        x_train,
        y_train,
        g_train,
        valid=(x_valid, y_valid, g_valid) if len(g_valid) else None,
        threads=config.models.als.threads,
    )
    rows = int(sum(groups))
    positives = int(sum(int((label > 0).sum()) for label in labels))
    seconds = time.perf_counter() - started
    log.info(
        "ranker trained on %s user lists (%s candidates, %s positive) in %.1fs: %d trees",
        f"{len(groups):,}",
        f"{rows:,}",
        f"{positives:,}",
        seconds,
        ranker.trees,
    )
    return RankerFit(ranker, len(groups), rows, positives, seconds, label_start, cut, warm)


def _period_lists(
    dataset: Dataset,
    config: Config,
    end: int,
    label_days: float,
    fit: Fitter,
    serve: Server,
    rng: np.random.Generator,
    max_users: int,
) -> _Period | None:
    """One label period ending at `end` (at most `max_users` users, a seeded sample)."""
    cfg = config.ranker
    frame = dataset.events.frame
    before = frame.loc[frame["timestamp"].to_numpy() < end]
    try:
        split = time_split(before, label_days)
    except (NotEnoughHistoryError, ValueError) as exc:
        log.warning("ranker: no label period before %d: %s", end, exc)
        return None
    if len(split.train) == 0 or len(split.test) == 0:
        return None
    train = subset(dataset, split.train, config)
    data = fit_data(train, config)
    models = fit(data, config)
    test = split.test
    users = train.users.index(test["user"].to_numpy())
    items = relevance_codes(train.items.index(test["item"].to_numpy()), test["item"].to_numpy())
    events = test["event"].to_numpy()
    useful = (users >= 0) & (items >= 0) & (events != EventType.RETURN)
    users, items, events = users[useful], items[useful], events[useful]
    asked = np.unique(users)
    if len(asked) == 0:
        return None
    if len(asked) > max_users:
        asked = np.sort(rng.choice(asked, max_users, replace=False))
    served = serve(config, train, data, models, users=asked.astype(np.int64))
    grade = np.where(np.isin(events, _CONVERSIONS), 2, 1).astype(np.int64)
    order = np.lexsort((items, users))
    users, items, grade = users[order], items[order], grade[order]
    starts = np.searchsorted(users, asked.astype(np.int64), side="left")
    ends = np.searchsorted(users, asked.astype(np.int64), side="right")
    filters = Filters().resolved(served.serving)
    blocks, labels, groups = [], [], []
    for position, user in enumerate(asked.tolist()):
        if not ranks(served, user):
            continue  # the blend answers them: the ranker learns from the lists it orders
        start, stop = int(starts[position]), int(ends[position])
        picker = new_picker(served, user, cfg.candidates, filters)
        found = ranker_candidates(served, user, split.cut, cfg.candidates, picker)
        if len(found) == 0:
            continue
        label = np.zeros(len(found), dtype=np.int64)
        mine, best = items[start:stop], grade[start:stop]
        where = np.minimum(np.searchsorted(found.items, mine), len(found) - 1)
        hit = found.items[where] == mine
        np.maximum.at(label, where[hit], best[hit])
        if not label.any():
            continue  # nothing to learn from a list with no positive
        blocks.append(ranker_features(served, found, user, split.cut))
        labels.append(label)
        groups.append(len(found))
    als = models.get("als")
    warm = None if not isinstance(als, ALSModel) else (train.items, als.item_factors_)
    return _Period(blocks, labels, groups, split.cut, len(asked), warm)


def _stack(
    blocks: list[np.ndarray], labels: list[np.ndarray], groups: list[int], chosen: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    picked = np.flatnonzero(chosen).tolist()
    if not picked:
        return np.zeros((0, blocks[0].shape[1]), np.float32), np.zeros(0), np.zeros(0, np.int64)
    return (
        np.vstack([blocks[i] for i in picked]),
        np.concatenate([labels[i] for i in picked]),
        np.asarray([groups[i] for i in picked], dtype=np.int64),
    )
