"""Online A/B experiments: per-unit outcomes after first exposure, differences to control, SRM.

Attribution rules (written into every report's Markdown as they stand here):

- A unit is the exposure's `user_id`, or its `visitor_id` when `user_id` is empty. Exposures with
  neither are left out (counted in the notes).
- A unit belongs to the variant of its first exposure in the experiment (the earliest `time`;
  ties by row order). A unit later shown another variant stays where it is and is counted as a
  crossover, which stable assignment should never produce.
- The unit's window is [first exposure, first exposure + window_days), in whole event seconds.
- Events are keyed by the shop's user id; a unit is joined to the events whose `user` equals its
  id, compared as text with whole numbers written plainly (17850, 17850.0 and "17850" are one
  id; "017" stays "017"). Anonymous units therefore only have outcomes when the shop logs
  visitor ids as users.
- Click-through: within the window, the unit had an event (view, cart, favourite or purchase;
  not a return) on an item one of its exposures in this experiment had shown it at or before
  that event's time.
- Cart / purchase conversion: any CART / PURCHASE event in the window.
- Revenue per unit: price × quantity of the window's purchases minus that of its returns
  (whatever purchase a return undoes); empty prices count 0, empty quantities 1.
- Repurchase rate: among units that bought anything before their first exposure, the share that
  buy within the window; empty when no unit of the variant had bought before.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from recsys.errors import SchemaError
from recsys.jsonable import jsonable
from recsys.metrics import Interval
from recsys.schema import EventType
from training.evaluation.report import DPI, JSON_NAME, MARKDOWN_NAME, PLOTS_SKIPPED

PLOT_NAME = "ab_metrics.png"
METRICS: tuple[str, ...] = (
    "click_through",
    "cart_conversion",
    "purchase_conversion",
    "revenue_per_unit",
    "repurchase_rate",
)
# Metrics whose per-unit values are 0/1: their MDE uses p(1 - p) of the control rate.
RATE_METRICS: frozenset[str] = frozenset(METRICS) - {"revenue_per_unit"}
SRM_ALPHA = 0.001
MDE_ALPHA = 0.05
MDE_POWER = 0.8
EXPOSURE_COLUMNS: tuple[str, ...] = ("time", "experiment", "variant", "user_id", "visitor_id")
EVENT_COLUMNS: tuple[str, ...] = ("user", "item", "event", "timestamp")
_SECONDS_PER_DAY = 86_400
_RULES_MARKER = "Attribution rules (written into every report's Markdown as they stand here):"
_INT_TEXT = r"-?(?:0|[1-9][0-9]*)(?:\.0*)?"
_CLICK_EVENTS = (EventType.VIEW, EventType.CART, EventType.FAVOURITE, EventType.PURCHASE)
# Resampled means are drawn in blocks of at most this many values, to bound memory.
_BLOCK_VALUES = 2_000_000


@dataclass(frozen=True)
class ABReportFiles:
    """The files of one written A/B report; `plot` is None when matplotlib is missing."""

    markdown: Path
    json: Path
    plot: Path | None


# --- the analysis ---------------------------------------------------------------------------


def ab_report(
    exposures: pd.DataFrame,
    events: pd.DataFrame,
    experiment: str,
    *,
    control: str | None = None,
    window_days: float = 7.0,
    expected_shares: Mapping[str, float] | None = None,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Return the JSON-ready analysis of one experiment (see the module docstring for the rules).

    `control` defaults to the variant named "control", else the variant of the experiment's
    first exposure row (row order of `exposures`). `expected_shares` (variant -> share,
    normalised to sum 1) defaults to equal shares of the variants seen.

    Returns {experiment, window_days, control, level, resamples, variants: {name: {units,
    anonymous_units, exposures, metrics: {metric: {mean, low, high, n}}}}, differences: [{variant,
    metric, diff, low, high, lift, significant, mde}], srm: {statistic, p_value, flagged, expected,
    observed}, crossovers, notes}; NaN where a number cannot be computed (jsonable makes it null).
    """
    _check_arguments(window_days, resamples, level)
    shown, dropped = _experiment_rows(exposures, experiment)
    variants = _variant_order(shown, control)
    units = _units(shown, window_days)
    outcomes = _outcomes(units, shown, _canonical_events(events))

    per_variant: dict[str, Any] = {}
    values: dict[str, dict[str, np.ndarray]] = {}
    for position, variant in enumerate(variants):
        mask = (units["variant"] == variant).to_numpy()
        values[variant] = {m: outcomes[m].to_numpy()[mask] for m in METRICS}
        per_variant[variant] = {
            "units": int(mask.sum()),
            "anonymous_units": int((mask & units["anonymous"].to_numpy()).sum()),
            "exposures": int((shown["variant"] == variant).sum()),
            "metrics": {
                m: _mean_entry(values[variant][m], resamples, level, [seed, 0, position, j])
                for j, m in enumerate(METRICS)
            },
        }

    differences = [
        _difference(
            variant,
            m,
            values[variants[0]][m],
            values[variant][m],
            resamples,
            level,
            [seed, 1, i, j],
        )
        for i, variant in enumerate(variants[1:], start=1)
        for j, m in enumerate(METRICS)
    ]
    observed = {v: per_variant[v]["units"] for v in variants}
    srm = sample_ratio_mismatch(observed, expected_shares)
    crossovers = int(units["crossover"].sum())
    return {
        "experiment": experiment,
        "window_days": float(window_days),
        "control": variants[0],
        "level": level,
        "resamples": resamples,
        "variants": per_variant,
        "differences": differences,
        "srm": srm,
        "crossovers": crossovers,
        "notes": _notes(units, outcomes, events, srm, crossovers, dropped),
    }


def bootstrap_difference(
    control: np.ndarray,
    variant: np.ndarray,
    *,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int | Sequence[int] = 0,
) -> Interval:
    """Percentile bootstrap interval of mean(variant) - mean(control), NaN values left out.

    Units are resampled within each arm independently (the arms are separate samples, not
    pairs). 0/1 arms are drawn as binomial counts, which is the same distribution as resampling
    their units and much cheaper.
    """
    a = np.asarray(control, dtype=np.float64)
    b = np.asarray(variant, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        nan = math.nan
        return Interval(nan, nan, nan, level)
    rng = np.random.default_rng(seed)
    diffs = _resampled_means(b, resamples, rng) - _resampled_means(a, resamples, rng)
    tail = (1 - level) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return Interval(float(b.mean() - a.mean()), float(low), float(high), level)


def minimum_detectable_effect(
    control: np.ndarray, variant: np.ndarray, *, rate: bool, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Absolute effect a two-sided test at `alpha` detects with `power` for these arm sizes.

    (z_{1-alpha/2} + z_power) * sd * sqrt(1/n_control + 1/n_variant), with sd = sqrt(p(1-p)) of
    the control rate for 0/1 metrics, else the pooled standard deviation of both arms.
    """
    a = np.asarray(control, dtype=np.float64)
    b = np.asarray(variant, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    n_a, n_b = len(a), len(b)
    if n_a == 0 or n_b == 0:
        return math.nan
    if rate:
        p = float(a.mean())
        sd = math.sqrt(p * (1 - p))
    else:
        if n_a + n_b < 3:
            return math.nan
        squares = (n_a - 1) * a.var(ddof=1 if n_a > 1 else 0) + (n_b - 1) * b.var(
            ddof=1 if n_b > 1 else 0
        )
        sd = math.sqrt(squares / (n_a + n_b - 2))
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return float(z * sd * math.sqrt(1 / n_a + 1 / n_b))


def sample_ratio_mismatch(
    observed: Mapping[str, int], expected_shares: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """Chi-square goodness of fit of units per variant to the expected shares; flag p < 0.001.

    Shares are normalised to sum 1; a variant with a share but no units counts 0 units.
    """
    if expected_shares is None:
        shares = {v: 1.0 for v in observed}
    else:
        unknown = [v for v in observed if v not in expected_shares]
        if unknown:
            raise ValueError(
                f"expected_shares has no share for variant(s) {unknown} seen in the exposures "
                f"(got shares for {sorted(expected_shares)}); give every variant a share"
            )
        shares = {str(v): float(s) for v, s in expected_shares.items()}
        if any(not math.isfinite(s) or s < 0 for s in shares.values()) or sum(shares.values()) <= 0:
            raise ValueError(f"expected_shares must be >= 0 and not all 0 (got {shares})")
    total_share = sum(shares.values())
    counts = {v: int(observed.get(v, 0)) for v in shares}
    n = sum(counts.values())
    expected = {v: n * s / total_share for v, s in shares.items()}
    if len(shares) < 2 or n == 0:
        statistic, p_value = math.nan, math.nan
    elif any(expected[v] == 0 and counts[v] > 0 for v in shares):
        # Units where none were expected: no sampling error explains them.
        statistic, p_value = math.inf, 0.0
    else:
        statistic = sum((counts[v] - e) ** 2 / e for v, e in expected.items() if e > 0)
        dof = sum(1 for e in expected.values() if e > 0) - 1
        p_value = float(stats.chi2.sf(statistic, dof)) if dof > 0 else math.nan
    return {
        "statistic": float(statistic),
        "p_value": float(p_value),
        "flagged": bool(p_value < SRM_ALPHA),
        "expected": expected,
        "observed": counts,
    }


def _check_arguments(window_days: float, resamples: int, level: float) -> None:
    """Raise ValueError on a window, resample count or level that makes no sense."""
    if not (math.isfinite(window_days) and window_days > 0):
        raise ValueError(f"window_days must be > 0 (got {window_days})")
    if resamples <= 0:
        raise ValueError(f"resamples must be > 0 (got {resamples})")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1) (got {level})")


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise SchemaError naming the columns `frame` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(
            f"{what} lack column(s) {missing} (got {list(frame.columns)}); "
            f"expected at least {list(columns)}"
        )


def id_keys(values: pd.Series) -> np.ndarray:
    """Return ids as text keys (None where empty); whole numbers plainly: 17850.0 -> "17850"."""
    text = values.astype("string").str.strip()
    if not pd.api.types.is_integer_dtype(values.dtype):
        text = text.where(text != "")
        whole = text.str.fullmatch(_INT_TEXT).fillna(False).astype(bool)
        text = text.mask(whole, text.str.replace(r"\.0*$", "", regex=True))
    keys = text.to_numpy(dtype=object)
    keys[text.isna().to_numpy()] = None
    return keys


def _experiment_rows(exposures: pd.DataFrame, experiment: str) -> tuple[pd.DataFrame, int]:
    """Return this experiment's exposures with their `unit` key, and how many had no id at all."""
    _require(exposures, [*EXPOSURE_COLUMNS, "items"], "exposures")
    rows = exposures[(exposures["experiment"] == experiment).to_numpy()]
    if len(rows) == 0:
        seen = list(pd.unique(exposures["experiment"]))[:10]
        raise ValueError(
            f"no exposures of experiment {experiment!r} ({len(exposures)} exposures, "
            f"experiments seen: {seen})"
        )
    bad = (rows["time"].isna() | rows["variant"].isna()).to_numpy()
    if bad.any():
        raise SchemaError(
            f"exposures of experiment {experiment!r}: {int(bad.sum())} row(s) without a time or "
            f"variant (first at row {rows.index[bad][0]}); every exposure needs both"
        )
    user = id_keys(rows["user_id"])
    visitor = id_keys(rows["visitor_id"])
    anonymous = pd.isna(user)
    shown = pd.DataFrame(
        {
            "time": rows["time"].to_numpy(dtype=np.int64),
            "variant": rows["variant"].astype(str).to_numpy(dtype=object),
            "unit": np.where(anonymous, visitor, user),
            "anonymous": anonymous,
            "items": rows["items"].to_numpy(dtype=object),
        }
    )
    keep = pd.notna(shown["unit"]).to_numpy()
    return shown[keep].reset_index(drop=True), int((~keep).sum())


def _variant_order(shown: pd.DataFrame, control: str | None) -> list[str]:
    """Return the variants, control first, then the others in order of appearance."""
    seen = [str(v) for v in pd.unique(shown["variant"])]
    if control is None:
        control = "control" if "control" in seen else seen[0]
    elif control not in seen:
        raise ValueError(f"control variant {control!r} has no exposures (variants seen: {seen})")
    return [control, *(v for v in seen if v != control)]


def _units(shown: pd.DataFrame, window_days: float) -> pd.DataFrame:
    """Return one row per unit: variant of its first exposure, window start and end, crossover."""
    code, keys = pd.factorize(shown["unit"])
    variant_code, _ = pd.factorize(shown["variant"])
    time = shown["time"].to_numpy()
    # Earliest exposure first, ties in row order (lexsort is stable).
    order = np.lexsort((np.arange(len(shown)), time))
    _, first_in_order = np.unique(code[order], return_index=True)
    first = order[first_in_order]  # row of each unit's first exposure, by unit code
    pairs = np.unique(code.astype(np.int64) * (variant_code.max() + 1) + variant_code)
    variants_seen = np.bincount(pairs // (variant_code.max() + 1), minlength=len(keys))
    start = time[first]
    return pd.DataFrame(
        {
            "variant": shown["variant"].to_numpy()[first],
            "start": start,
            "end": start + window_days * _SECONDS_PER_DAY,
            "anonymous": shown["anonymous"].to_numpy()[first],
            "crossover": variants_seen > 1,
        },
        index=pd.Index(keys, name="unit"),
    )


def _canonical_events(events: pd.DataFrame) -> pd.DataFrame:
    """Return events with text `unit` and `item` keys, int codes, and an amount per row."""
    _require(events, EVENT_COLUMNS, "events")
    n = len(events)
    price = (
        pd.to_numeric(events["price"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        if "price" in events
        else np.zeros(n)
    )
    quantity = (
        pd.to_numeric(events["quantity"], errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        if "quantity" in events
        else np.ones(n)
    )
    return pd.DataFrame(
        {
            "unit": id_keys(events["user"]),
            "item": id_keys(events["item"]),
            "event": events["event"].to_numpy(dtype=np.int64),
            "timestamp": events["timestamp"].to_numpy(dtype=np.int64),
            # Returns are stored with positive quantities; abs() also takes signed ones.
            "amount": np.nan_to_num(price, nan=0.0) * np.abs(np.nan_to_num(quantity, nan=1.0)),
        }
    )


def _outcomes(units: pd.DataFrame, shown: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """Return each unit's metric values (0/1, revenue, or NaN where a metric does not apply)."""
    n = len(units)
    code = units.index.get_indexer(pd.Index(events["unit"]))
    ev = events[code >= 0]
    code = code[code >= 0]
    t = ev["timestamp"].to_numpy()
    kind = ev["event"].to_numpy()
    start = units["start"].to_numpy()[code]
    window = (t >= start) & (t < units["end"].to_numpy()[code])

    def any_of(mask: np.ndarray) -> np.ndarray:
        return (np.bincount(code[mask], minlength=n) > 0).astype(np.float64)

    purchased = any_of(window & (kind == EventType.PURCHASE))
    sign = np.select([kind == EventType.PURCHASE, kind == EventType.RETURN], [1.0, -1.0], 0.0)
    amount = ev["amount"].to_numpy() * sign * window
    bought_before = any_of((t < start) & (kind == EventType.PURCHASE)) > 0
    acts = window & np.isin(kind, _CLICK_EVENTS)
    return pd.DataFrame(
        {
            "click_through": _clicked(
                units, shown, code[acts], ev["item"].to_numpy()[acts], t[acts]
            ),
            "cart_conversion": any_of(window & (kind == EventType.CART)),
            "purchase_conversion": purchased,
            "revenue_per_unit": np.bincount(code, weights=amount, minlength=n),
            "repurchase_rate": np.where(bought_before, purchased, np.nan),
        },
        index=units.index,
    )


def _clicked(
    units: pd.DataFrame, shown: pd.DataFrame, code: np.ndarray, item: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """Return 1.0 for units that acted on an item at or after an exposure showed it, else 0.0.

    `code`, `item`, `t`: unit code, item key and time of the window's view/cart/favourite/purchase.
    """
    clicked = np.zeros(len(units))
    shown_code = units.index.get_indexer(pd.Index(shown["unit"]))
    ends = units["end"].to_numpy()[shown_code]
    in_window = shown["time"].to_numpy() < ends
    rows, shown_items = _flatten(shown["items"].to_numpy()[in_window])
    if len(rows) == 0 or len(code) == 0:
        return clicked
    shown_units = shown_code[in_window][rows].astype(np.int64)
    shown_times = shown["time"].to_numpy()[in_window][rows]
    # One code per item key over both sides, so a (unit, item) pair is a single int64.
    keys = id_keys(pd.Series(np.concatenate([shown_items, item]), dtype=object))
    items, uniques = pd.factorize(keys)
    width = len(uniques) + 1
    shown_pairs = shown_units * width + items[: len(rows)]
    act_pairs = code.astype(np.int64) * width + items[len(rows) :]
    # The first time each (unit, item) pair was shown: sort by pair, then time.
    order = np.lexsort((shown_times, shown_pairs))
    pairs = shown_pairs[order]
    first = np.r_[True, pairs[1:] != pairs[:-1]]
    pairs, shown_at = pairs[first], shown_times[order][first]
    at = np.minimum(np.searchsorted(pairs, act_pairs), len(pairs) - 1)
    hit = (pairs[at] == act_pairs) & (t >= shown_at[at]) & (items[len(rows) :] >= 0)
    clicked[code[hit]] = 1.0
    return clicked


def _flatten(lists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return (row of each item, items) of a column of item lists; a missing list holds none."""
    sizes = np.array([0 if _is_missing(x) else len(x) for x in lists], dtype=np.int64)
    items = [item for x in lists if not _is_missing(x) for item in x]
    return np.repeat(np.arange(len(lists)), sizes), np.array(items, dtype=object)


def _is_missing(value: Any) -> bool:
    """Return True for a list-valued cell that holds no list (None, NaN)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _mean_entry(
    values: np.ndarray, resamples: int, level: float, seed: int | Sequence[int]
) -> dict[str, Any]:
    """Return {mean, low, high, n} of the per-unit values (NaN left out), resampling units."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    means = _resampled_means(finite, resamples, np.random.default_rng(seed))
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return {"mean": float(finite.mean()), "low": float(low), "high": float(high), "n": len(finite)}


def _difference(
    variant: str,
    metric: str,
    control: np.ndarray,
    treated: np.ndarray,
    resamples: int,
    level: float,
    seed: Sequence[int],
) -> dict[str, Any]:
    """Return one row of the differences table: variant minus control on one metric."""
    interval = bootstrap_difference(control, treated, resamples=resamples, level=level, seed=seed)
    base = float(np.nanmean(control)) if np.isfinite(control).any() else math.nan
    lift = interval.mean / base if base and math.isfinite(base) else math.nan
    mde = minimum_detectable_effect(
        control, treated, rate=metric in RATE_METRICS, alpha=MDE_ALPHA, power=MDE_POWER
    )
    return {
        "variant": variant,
        "metric": metric,
        "diff": interval.mean,
        "low": interval.low,
        "high": interval.high,
        "lift": lift,
        "significant": bool(interval.low > 0 or interval.high < 0),
        "mde": mde,
    }


def _resampled_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Return `resamples` means of `values` resampled with replacement."""
    n = len(values)
    if np.all((values == 0) | (values == 1)):
        return rng.binomial(n, float(values.mean()), size=resamples) / n
    means = np.empty(resamples)
    block = max(1, _BLOCK_VALUES // n)
    for start in range(0, resamples, block):
        stop = min(start + block, resamples)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return means


def _notes(
    units: pd.DataFrame,
    outcomes: pd.DataFrame,
    events: pd.DataFrame,
    srm: Mapping[str, Any],
    crossovers: int,
    dropped: int,
) -> list[str]:
    """Return the warnings a reader must see next to the numbers."""
    notes = []
    if srm["flagged"]:
        notes.append(
            f"Sample-ratio mismatch (p = {srm['p_value']:.2g} < {SRM_ALPHA}): units per variant "
            "do not match the expected shares; assignment or logging is broken, so the "
            "differences cannot be trusted."
        )
    if crossovers:
        notes.append(
            f"{crossovers:,} unit(s) were shown more than one variant and are counted in the "
            "variant of their first exposure; stable assignment should never do this."
        )
    if dropped:
        notes.append(f"{dropped:,} exposure(s) had neither a user_id nor a visitor_id: left out.")
    anonymous = int(units["anonymous"].sum())
    if anonymous:
        notes.append(
            f"{anonymous:,} unit(s) are anonymous (visitor_id only): their outcomes count only "
            "where the shop logs visitor ids as event users."
        )
    if len(events):
        last = int(pd.to_numeric(events["timestamp"]).max())
        open_windows = int((units["end"] > last + 1).sum())
        if open_windows:
            notes.append(
                f"{open_windows:,} unit(s) have windows ending after the last event "
                f"(timestamp {last}): their outcomes are still incomplete."
            )
    if not np.isfinite(outcomes["repurchase_rate"].to_numpy()).any():
        notes.append("Repurchase rate: no unit had bought before its first exposure.")
    return notes


# --- terminal summary -----------------------------------------------------------------------


def format_ab_report(results: Mapping[str, Any]) -> str:
    """Return a terminal summary: variants, metrics against control, SRM and notes."""
    control = results["control"]
    level = float(results.get("level", 0.95))
    lines = [
        f"A/B experiment {results['experiment']!r}: control {control!r}, "
        f"window {results['window_days']:g} days, {level:.0%} intervals",
        "",
        f"{'variant':<16}{'units':>10}{'exposures':>12}",
    ]
    for name, info in results["variants"].items():
        lines.append(f"{name:<16}{info['units']:>10,}{info['exposures']:>12,}")
    for name in list(results["variants"])[1:]:
        lines += ["", f"{name} vs {control}:"]
        lines.append(
            f"  {'metric':<21}{control:>12}{name:>12}  {'difference [interval]':<31}"
            f"{'lift':>8}{'MDE':>10}"
        )
        rows = [d for d in results["differences"] if d["variant"] == name]
        for d in rows:
            metric = d["metric"]
            a = _fmt(results["variants"][control]["metrics"][metric]["mean"], metric)
            b = _fmt(results["variants"][name]["metrics"][metric]["mean"], metric)
            diff = (
                f"{_fmt(d['diff'], metric, True)} "
                f"[{_fmt(d['low'], metric, True)}, {_fmt(d['high'], metric, True)}]"
            )
            mark = " *" if d["significant"] else ""
            lines.append(
                f"  {metric:<21}{a:>12}{b:>12}  {diff:<31}{_percent(d['lift']):>8}"
                f"{_fmt(d['mde'], metric):>10}{mark}"
            )
    lines += ["", "* interval excludes 0", _srm_line(results["srm"])]
    lines.append(f"crossovers: {results['crossovers']:,}")
    lines += [f"note: {note}" for note in results.get("notes", [])]
    return "\n".join(lines)


def _number(value: Any) -> float:
    """Return a float; NaN for None (how JSON carries NaN) and anything not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return math.nan
    return float(value)


def _fmt(value: Any, metric: str, signed: bool = False) -> str:
    """Return a metric value as text: rates to 4 decimals, revenue to 2; "–" when missing."""
    number = _number(value)
    if not math.isfinite(number):
        return "–"
    digits = 4 if metric in RATE_METRICS else 2
    return f"{number:+.{digits}f}" if signed else f"{number:.{digits}f}"


def _percent(value: Any) -> str:
    """Return a relative lift as a signed percentage; "–" when missing."""
    number = _number(value)
    return f"{number:+.1%}" if math.isfinite(number) else "–"


def _srm_line(srm: Mapping[str, Any]) -> str:
    """Return the one-line SRM verdict."""
    p_value = _number(srm.get("p_value"))
    if not math.isfinite(p_value):
        return "sample ratio: not tested (fewer than two variants)"
    verdict = "MISMATCH" if srm.get("flagged") else "ok"
    return (
        f"sample ratio: chi2 = {_number(srm.get('statistic')):.2f}, p = {p_value:.3g} "
        f"({verdict}; flagged below {SRM_ALPHA})"
    )


# --- files ----------------------------------------------------------------------------------


def write_ab_report(results: Mapping[str, Any], out: Path) -> ABReportFiles:
    """Write results.json, the plot and report.md into `out` (created); return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / JSON_NAME
    text = json.dumps(jsonable(results), indent=2, allow_nan=False, ensure_ascii=False)
    json_path.write_text(text + "\n", encoding="utf-8")
    plot = _write_plot(results, out / PLOT_NAME)
    markdown_path = out / MARKDOWN_NAME
    markdown_path.write_text(_markdown(results, plot), encoding="utf-8")
    return ABReportFiles(markdown=markdown_path, json=json_path, plot=plot)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1) -> str:
    """Return a Markdown table; the first `text_columns` are left-aligned, the rest right."""
    rules = [":--" if i < text_columns else "--:" for i in range(len(header))]
    return "\n".join("| " + " | ".join(line) + " |" for line in [header, rules, *rows])


def _markdown(results: Mapping[str, Any], plot: Path | None) -> str:
    """Return the text of report.md."""
    control = results["control"]
    variants = results["variants"]
    level = float(results.get("level", 0.95))
    about = (
        f"Control: `{control}`. Window: {results['window_days']:g} days after each unit's first "
        f"exposure. Intervals: {level:.0%} percentile bootstrap over units "
        f"({results.get('resamples', '?')} resamples)."
    )
    blocks = [f"# A/B experiment `{results['experiment']}`", about]

    rows = [
        [f"`{name}`", f"{v['units']:,}", f"{v.get('anonymous_units', 0):,}", f"{v['exposures']:,}"]
        for name, v in variants.items()
    ]
    blocks += ["## Traffic", _table(["variant", "units", "anonymous", "exposures"], rows)]

    header = ["metric", *(f"`{name}`" for name in variants)]
    rows = []
    for metric in METRICS:
        cells = [metric]
        for info in variants.values():
            m = info["metrics"][metric]
            cells.append(
                f"{_fmt(m['mean'], metric)} [{_fmt(m['low'], metric)}, {_fmt(m['high'], metric)}]"
            )
        rows.append(cells)
    blocks += ["## Metrics per unit", _table(header, rows)]

    header = ["variant", "metric", "difference", "interval", "lift", "MDE", "significant"]
    rows = [
        [
            f"`{d['variant']}`",
            d["metric"],
            _fmt(d["diff"], d["metric"], True),
            f"[{_fmt(d['low'], d['metric'], True)}, {_fmt(d['high'], d['metric'], True)}]",
            _percent(d["lift"]),
            _fmt(d["mde"], d["metric"]),
            "**yes**" if d["significant"] else "no",
        ]
        for d in results["differences"]
    ]
    blocks += [
        f"## Differences to `{control}`",
        "Significant: the interval excludes 0. MDE: the absolute difference this traffic "
        f"detects with {MDE_POWER:.0%} power at α = {MDE_ALPHA} (two-sided).",
        _table(header, rows, text_columns=2),
    ]

    srm = results["srm"]
    rows = [
        [f"`{v}`", f"{srm['observed'][v]:,}", f"{_number(e):,.1f}"]
        for v, e in srm["expected"].items()
    ]
    blocks += [
        "## Sample ratio",
        _srm_line(srm) + ".",
        _table(["variant", "units", "expected"], rows),
        f"Crossovers (units shown more than one variant): {results['crossovers']:,}.",
    ]
    if results.get("notes"):
        blocks += ["## Notes", "\n".join(f"- {note}" for note in results["notes"])]
    blocks += ["## Plot", f"![metrics per variant]({plot.name})" if plot else PLOTS_SKIPPED]
    blocks += ["## How the numbers are made", _rules_text()]
    return "\n\n".join(blocks) + "\n"


def _rules_text() -> str:
    """Return the attribution rules of the module docstring as a Markdown list."""
    return (__doc__ or "").split(_RULES_MARKER)[-1].strip()


def _write_plot(results: Mapping[str, Any], path: Path) -> Path | None:
    """Draw each metric's per-variant mean and interval into `path`; None without matplotlib."""
    # A plot left from an earlier report would contradict the new results.json.
    path.unlink(missing_ok=True)
    try:
        # A Figure made directly (not through pyplot) needs no display and no global backend.
        from matplotlib.figure import Figure
    except ImportError:
        return None
    names = list(results["variants"])
    figure = Figure(figsize=(3.0 * len(METRICS), 0.5 * len(names) + 1.8))
    for axes, metric in zip(figure.subplots(1, len(METRICS), sharey=True), METRICS, strict=True):
        entries = [results["variants"][v]["metrics"][metric] for v in names]
        mean = np.array([_number(e["mean"]) for e in entries])
        low = np.array([_number(e["low"]) for e in entries])
        high = np.array([_number(e["high"]) for e in entries])
        ys = np.arange(len(names))
        errors = np.nan_to_num(np.vstack([mean - low, high - mean]), nan=0.0)
        axes.errorbar(mean, ys, xerr=errors, fmt="o", capsize=3)
        if math.isfinite(mean[0]):
            axes.axvline(mean[0], color="grey", linestyle="--", linewidth=0.8)
        axes.set_title(metric.replace("_", " "), fontsize="small")
        axes.set_yticks(ys, names)
        axes.set_ylim(-0.5, len(names) - 0.5)
        axes.tick_params(labelsize="small")
    figure.axes[0].invert_yaxis()
    figure.tight_layout()
    figure.savefig(path, dpi=DPI)
    return path
