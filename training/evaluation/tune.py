"""Choose a shop's blend weights on a validation period, never on the held-out one.

The validation period is the stretch of the same length just before the evaluation's held-out
period; models are fitted on what came before it, once, and the weights (which need no refit)
are searched one at a time over small grids, twice round (coordinate ascent). Known users'
weights are scored by NDCG@20 on their next add-to-carts and purchases (every event if the log
has none); the visit weights by the hit rate of the next item in anonymous visits. A value
replaces the current one only if it wins by more than `min_gain`, so noise does not move the
defaults. Confirm the result once with `recsys evaluate` on the held-out period.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys.config import BlendConfig, Config
from recsys.metrics import mean_metrics, ranking_metrics
from training.dataset import build_dataset
from training.evaluation.evaluate import (
    HEADLINE_K,
    Engine,
    Requests,
    fit_engine,
    global_requests,
    held_out,
    options_for,
    session_requests,
)
from training.scoring import served_ranker

log = logging.getLogger(__name__)

# The values tried for each weight of a known user's list, and for a visit's.
KNOWN_GRID: dict[str, tuple[float, ...]] = {
    "bought_before": (0.5, 1.0, 2.0, 3.0, 4.0, 6.0),
    "repurchase": (0.0, 0.5, 1.0, 2.0),
    "personal": (0.5, 1.0, 2.0, 3.0),
    "neighbours": (0.0, 0.5, 1.0, 2.0),
    "complementary": (0.0, 0.25, 0.5, 1.0),
    "popular": (0.0, 0.05, 0.2, 0.5),
    "recency_half_life_days": (7.0, 15.0, 30.0, 60.0, 120.0),
    "reminder": (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
    "reminder_cart": (1.0, 2.0, 4.0, 8.0),
    "reminder_favourite": (1.0, 2.0, 3.0, 6.0),
    "reminder_half_life_hours": (3.0, 6.0, 12.0, 24.0, 48.0, 96.0),
    "category_reach": (0.0, 0.25, 0.5, 1.0, 2.0),
}
VISIT_GRID: dict[str, tuple[float, ...]] = {
    "session": (0.25, 0.5, 1.0, 2.0, 4.0, 8.0),
    "session_decay": (0.3, 0.5, 0.7, 0.85, 1.0),
    "visit_reminder": (0.0, 0.5, 1.0, 2.0, 4.0, 8.0),
}
# Visits are scored on at most this many next-item predictions (a seeded sample).
_VISIT_PREDICTIONS = 5_000
# Below this many users (or predictions) a weight's win is mostly noise: that group's weights
# are left as configured.
MIN_SAMPLE = 100


@dataclass
class TuneResult:
    """The chosen weights, what they score against the configured ones, and every trial."""

    blend: BlendConfig
    start: BlendConfig
    scores: dict[str, tuple[float, float]]  # objective -> (configured, chosen)
    trials: list[dict[str, Any]] = field(default_factory=list)
    period: str = ""
    users: int = 0
    predictions: int = 0
    skipped: list[str] = field(default_factory=list)

    def changed(self) -> dict[str, tuple[float, float]]:
        """The weights that moved: name -> (configured, chosen)."""
        out = {}
        for name in (*KNOWN_GRID, *VISIT_GRID):
            before, after = getattr(self.start, name), getattr(self.blend, name)
            if before != after:
                out[name] = (before, after)
        return out

    def grid_markdown(self) -> str:
        """The last round's trials as a Markdown table: each weight's values and their scores."""
        last = max((t["round"] for t in self.trials), default=0)
        lines = ["| objective | weight | value: score (chosen in bold) |", "|---|---|---|"]
        rows: dict[tuple[str, str], list[str]] = {}
        for trial in self.trials:
            if trial["round"] != last:
                continue
            chosen = getattr(self.blend, trial["weight"]) == trial["value"]
            cell = f"{trial['value']:g}: {trial['score']:.4f}"
            key = (trial["objective"], trial["weight"])
            rows.setdefault(key, []).append(f"**{cell}**" if chosen else cell)
        for (objective, weight), cells in rows.items():
            lines.append(f"| {objective} | `{weight}` | {', '.join(cells)} |")
        return "\n".join(lines) + "\n"

    def toml(self) -> str:
        """The chosen weights as a `[blend]` section to paste into the shop's configuration."""
        lines = [f"# chosen by `recsys tune` on {self.period}", "[blend]"]
        for name in (*KNOWN_GRID, *VISIT_GRID):
            lines.append(f"{name} = {getattr(self.blend, name)!r}")
        return "\n".join(lines) + "\n"

    def format(self) -> str:
        """A summary for the terminal: the objectives before and after, and the moved weights."""
        lines = [
            f"tuned on {self.period} ({self.users:,} users, {self.predictions:,} visits' "
            "next items)"
        ]
        for objective, (before, after) in self.scores.items():
            gain = after / before - 1 if before > 0 else float("nan")
            lines.append(f"  {objective:<46}{before:.4f} -> {after:.4f} ({gain:+.1%})")
        lines += [f"  {reason}" for reason in self.skipped]
        moved = self.changed()
        if not moved:
            lines.append("  no weight beat the configured one by the required margin")
        for name, (before, after) in moved.items():
            lines.append(f"  {name:<46}{before:g} -> {after:g}")
        return "\n".join(lines)


def tune(
    config: Config,
    *,
    holdout_days: float | None = None,
    holdout_share: float | None = None,
    rounds: int = 2,
    min_gain: float = 0.005,
    on_error: str | None = None,
    progress: bool = True,
) -> TuneResult:
    """Search the blend weights on the validation period before the held-out one."""
    if rounds <= 0:
        raise ValueError(f"rounds must be > 0 (got {rounds})")
    options = options_for(config.evaluation, holdout_days, holdout_share, None)
    dataset = build_dataset(config, on_error=on_error)
    split, period = held_out(
        dataset.events.frame, options, config.training.holdout_days, validation=True
    )
    engine = fit_engine("engine", config, dataset, split)
    rng = np.random.default_rng(config.seed)
    known = global_requests(engine, split, options, rng)
    targets = _known_targets(known)
    every_known = known.group_rows["known"]
    rows = {
        target: every_known[[len(known.relevant[target][i]) > 0 for i in every_known]]
        for target in targets
    }
    visit_options = dataclasses.replace(options, max_session_predictions=_VISIT_PREDICTIONS)
    found = session_requests(engine, split, visit_options, rng)

    def known_score(blend: BlendConfig) -> float:
        # Conversions and every next event count alike, where they differ (browse logs).
        values = [_score(engine, blend, known, rows[t], t, "ndcg") for t in targets]
        return float(np.mean(values))

    objectives: list[tuple[str, dict[str, tuple[float, ...]], Callable[[BlendConfig], float]]] = []
    skipped: list[str] = []
    n_users = len(rows[targets[0]])
    if n_users >= MIN_SAMPLE:
        label = f"NDCG@{HEADLINE_K} of known users ({' and '.join(targets)})"
        objectives.append((label, KNOWN_GRID, known_score))
    else:
        skipped.append(
            f"known users' weights kept: only {n_users} users in the validation period "
            f"(at least {MIN_SAMPLE} needed)"
        )
    if found is not None and len(found[0].users) >= MIN_SAMPLE:
        visits = found[0]
        every = np.arange(len(visits.users))

        def visit_score(blend: BlendConfig) -> float:
            return _score(engine, blend, visits, every, "next", "hit_rate")

        objectives.append((f"HR@{HEADLINE_K} of the next item in a visit", VISIT_GRID, visit_score))
    else:
        count = 0 if found is None else len(found[0].users)
        skipped.append(
            f"visit weights kept: only {count} next-item predictions in the validation period "
            f"(at least {MIN_SAMPLE} needed)"
        )

    from tqdm import tqdm

    total = rounds * sum(len(v) for _, grid, _ in objectives for v in grid.values())
    best = config.blend
    scores: dict[str, tuple[float, float]] = {}
    trials: list[dict[str, Any]] = []
    with tqdm(total=total, desc="tune", unit="trials", disable=not progress) as bar:
        for objective, grid, score in objectives:
            start = current = score(best)
            for round_ in range(1, rounds + 1):
                for name, values in grid.items():
                    for value in values:
                        change: dict[str, Any] = {name: value}
                        candidate = dataclasses.replace(best, **change)
                        value_score = current if candidate == best else score(candidate)
                        trials.append(
                            {
                                "objective": objective,
                                "round": round_,
                                "weight": name,
                                "value": value,
                                "score": value_score,
                            }
                        )
                        if value_score > current * (1 + min_gain):
                            best, current = candidate, value_score
                        bar.update()
            scores[objective] = (start, current)
    return TuneResult(
        blend=best,
        start=config.blend,
        scores=scores,
        trials=trials,
        period=period,
        users=n_users,
        predictions=0 if found is None else len(found[0].users),
        skipped=skipped,
    )


def _known_targets(requests: Requests) -> list[str]:
    """Conversions, and every next event too where the log has more than conversions."""
    if "conversion" not in requests.relevant:
        return ["all"]
    conversion, every = requests.relevant["conversion"], requests.relevant["all"]
    same = all(len(a) == len(b) for a, b in zip(conversion, every, strict=True))
    return ["conversion"] if same else ["conversion", "all"]


def _score(
    engine: Engine,
    blend_config: BlendConfig,
    requests: Requests,
    rows: np.ndarray,
    target: str,
    metric: str,
) -> float:
    """The mean of one metric at k=20 for the given request rows under other weights, scored on
    the lists serving gives with them (tier rules, chain and filters included; the learned
    ranker left out, since the blend it re-ranks is what is tuned and what serves without it)."""
    served = engine.served.with_ranker(None).with_blend(blend_config)
    rank = served_ranker(served)
    lists = np.full((len(rows), HEADLINE_K), -1, dtype=np.int64)
    for out, row in enumerate(rows.tolist()):
        found = rank(
            int(requests.users[row]),
            requests.user_ids[row],
            HEADLINE_K,
            requests.visits[row],
            int(requests.now[row]),
        )
        lists[out, : len(found)] = found
    truth: Sequence[np.ndarray] = [requests.relevant[target][row] for row in rows.tolist()]
    values = ranking_metrics(lists, truth, engine.data.n_items, HEADLINE_K)
    return mean_metrics(values)[metric]
