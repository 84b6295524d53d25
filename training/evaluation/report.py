"""The offline evaluation report: Markdown tables, a JSON of every number, and PNG plots."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.jsonable import jsonable

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MARKDOWN_NAME = "report.md"
JSON_NAME = "results.json"
DPI = 110
DASH = "–"  # a value nobody could be scored on (NaN) or one the results leave out
PLOTS_SKIPPED = (
    'Plots skipped: matplotlib is not installed; install with `pip install "recsys-shop[report]"`.'
)
# Series styles: no two strategies share one, and the engine stands out (black, thick, on top).
_COLOURS = (  # matplotlib's tab10
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")  # 9 against 10 colours: 90 pairs
_LINES = ("-", "--", ":", "-.")
_HATCHES = ("", "//", "..", "xx")  # bars: a new hatch each time the colours come round again
_ENGINE_COLOURS = ("black", "#7f0000", "#00264d")  # an engine per compared configuration
# A user group smaller than this is drawn faded and labelled with its size: its mean is noise.
FEW_USERS = 20
_METRIC_NAMES = {
    "recall": "Recall",
    "precision": "Precision",
    "ndcg": "NDCG",
    "map": "MAP",
    "hit_rate": "HR",
    "mrr": "MRR",
}


@dataclass(frozen=True)
class ReportFiles:
    """The files of one written report."""

    markdown: Path
    json: Path
    plots: tuple[Path, ...]


def write_report(results: dict[str, Any], out: Path) -> ReportFiles:
    """Write results.json, the plots and report.md into `out` (created); return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / JSON_NAME
    text = json.dumps(jsonable(results), indent=2, allow_nan=False, ensure_ascii=False)
    json_path.write_text(text + "\n", encoding="utf-8")
    plots, skipped = _write_plots(results, out)
    markdown_path = out / MARKDOWN_NAME
    markdown_path.write_text(_markdown(results, plots, skipped), encoding="utf-8")
    return ReportFiles(markdown=markdown_path, json=json_path, plots=plots)


def render_markdown(results: dict[str, Any], plots: Sequence[Path] = ()) -> str:
    """Return the text of report.md, embedding `plots` by their file names."""
    return _markdown(results, plots, skipped=None)


# --- JSON -----------------------------------------------------------------------------------


# --- reading the results --------------------------------------------------------------------


def _number(value: Any) -> float:
    """Return a metric value as a float; NaN when it is missing or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return math.nan
    return float(value)


def _targets(results: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return the global protocol's targets (empty when absent)."""
    return (results.get("global") or {}).get("targets") or {}


def _groups(results: Mapping[str, Any], target: str) -> Mapping[str, Any]:
    """Return the user groups of one target (empty when absent)."""
    return (_targets(results).get(target) or {}).get("groups") or {}


def _group_results(results: Mapping[str, Any], target: str, group: str) -> Mapping[str, Any]:
    """Return strategy -> k -> metric -> value for one target and user group."""
    return (_groups(results, target).get(group) or {}).get("results") or {}


def _headline(results: Mapping[str, Any]) -> tuple[str, str] | None:
    """Return the headline (target, group): as named, else the verdict's, else the first known."""
    targets = _targets(results)
    if not targets:
        return None
    pick = results.get("headline") or results.get("verdict") or {}
    named = pick.get("target")
    target = str(named) if named in targets else str(next(iter(targets)))
    group = _default_group(_groups(results, target), pick.get("group"))
    return None if group is None else (target, group)


def _default_group(groups: Mapping[str, Any], wanted: str | None = "known") -> str | None:
    """Return `wanted` if it is one of `groups`, else "known", else the first group."""
    for name in (wanted, "known"):
        if name in groups:
            return name
    return next(iter(groups), None)


def _scored_groups(results: Mapping[str, Any], target: str) -> dict[str, Mapping[str, Any]]:
    """Return the user groups of one target that have results."""
    groups = _groups(results, target).items()
    return {g: info for g, info in groups if (info or {}).get("results")}


def _ks(results: Mapping[str, Any], data: Mapping[str, Any]) -> list[int]:
    """Return the cut-offs, ascending: as listed, else those found in the per-strategy results."""
    listed = results.get("ks")
    if listed:
        return sorted(int(k) for k in listed)
    return sorted({int(k) for per_k in data.values() for k in per_k or {}})


def _metrics(results: Mapping[str, Any], data: Mapping[str, Any]) -> list[str]:
    """Return the metric names: as listed, else those found in the per-strategy results."""
    listed = results.get("metrics")
    if listed:
        return [str(metric) for metric in listed]
    found = (m for per_k in data.values() for at in (per_k or {}).values() for m in at or {})
    return list(dict.fromkeys(found))


def _main_metric(metrics: Sequence[str]) -> str | None:
    """Return the metric of the by-group views: NDCG if there is one."""
    return "ndcg" if "ndcg" in metrics else next(iter(metrics), None)


def _value(per_k: Mapping[Any, Any] | None, k: int, metric: str) -> float:
    """Return one strategy's metric at k (k keys are strings; ints are accepted too)."""
    per_k = per_k or {}
    at = per_k.get(str(k)) or per_k.get(k) or {}
    return _number(at.get(metric))


def _order(results: Mapping[str, Any], present: Iterable[str]) -> list[str]:
    """Return the strategy keys in `present`, in display order; ones not listed come last."""
    present = list(dict.fromkeys(present))
    listed = [key for key in results.get("strategies") or {} if key in present]
    return listed + [key for key in present if key not in listed]


def _name(results: Mapping[str, Any], key: str) -> str:
    """Return a strategy's label (its key when it has none)."""
    info = (results.get("strategies") or {}).get(key) or {}
    return str(info.get("label") or key)


def _beyond(results: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """Return a strategy's beyond-accuracy numbers (empty when absent)."""
    return ((results.get("global") or {}).get("beyond") or {}).get(key) or {}


def _latency(beyond: Mapping[str, Any], quantile: str) -> float:
    """Return one latency figure in milliseconds."""
    return _number((beyond.get("latency_ms") or {}).get(quantile))


# --- Markdown -------------------------------------------------------------------------------


def _markdown(results: Mapping[str, Any], plots: Sequence[Path], skipped: str | None) -> str:
    """Return the report's Markdown; `skipped` says why there are no plots, if it is known."""
    sections = [
        _intro(results),
        _headline_section(results),
        _targets_section(results),
        _session_section(results),
        _comparisons_section(results),
        _plots_section(plots, skipped),
        _notes_section(results),
        _timings_section(results),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _cell(text: Any) -> str:
    """Return text safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _metric_text(value: float) -> str:
    """Format a ranking metric."""
    return f"{value:.4f}" if math.isfinite(value) else DASH


def _short(value: float) -> str:
    """Format a measurement: three significant digits, whole numbers from 100 on."""
    if not math.isfinite(value):
        return DASH
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _percent(value: float) -> str:
    """Format a share as a percentage."""
    return f"{value:.1%}" if math.isfinite(value) else DASH


def _count(value: Any) -> str:
    """Format a count with thousands separators."""
    number = _number(value)
    return f"{int(number):,}" if math.isfinite(number) and number == int(number) else str(value)


def _metric_header(metric: str, k: Any) -> str:
    """Return a column header such as NDCG@20."""
    return f"{_METRIC_NAMES.get(metric, metric)}@{k}"


def _best_in_bold(matrix: Sequence[Sequence[float]]) -> list[list[str]]:
    """Format metric rows, the highest value of each column in bold (ties at display precision)."""
    cells = [[_metric_text(value) for value in row] for row in matrix]
    for column in range(len(matrix[0]) if matrix else 0):
        finite = [row[column] for row in matrix if math.isfinite(row[column])]
        if not finite:
            continue
        best = _metric_text(max(finite))
        for row in cells:
            if row[column] == best:
                row[column] = f"**{best}**"
    return cells


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1) -> str:
    """Return a Markdown table; the first `text_columns` are left-aligned, the rest right."""
    rules = [":--" if i < text_columns else "--:" for i in range(len(header))]
    lines = [header, rules, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def _intro(results: Mapping[str, Any]) -> str:
    """Return the title and the paragraph on data, split and verdict."""
    facts = []
    dataset = results.get("dataset") or {}
    counts = [f"{_count(dataset[n])} {n}" for n in ("events", "users", "items") if n in dataset]
    config = f" (`{dataset['config']}`)" if dataset.get("config") else ""
    if counts or config:
        facts.append(f"Data{config}: {', '.join(counts) or 'no counts given'}.")
    split = results.get("split") or {}
    if split:
        parts = [f"holdout: {split['holdout']}"] if split.get("holdout") else []
        parts += [
            f"{_count(split[key])} {what} events"
            for key, what in (("train_events", "training"), ("test_events", "test"))
            if key in split
        ]
        detail = f" ({', '.join(parts)})" if parts else ""
        facts.append(f"Time split at {split.get('cut', 'an unstated time')}{detail}.")
    facts.extend(_verdict_lines(results.get("verdict") or {}))
    title = f"# Offline evaluation: {results.get('title') or 'untitled'}"
    return title + ("\n\n" + " ".join(facts) if facts else "")


def _verdict_lines(verdict: Mapping[str, Any]) -> list[str]:
    """Return the verdict message in bold, led by PASSED or NOT MET."""
    if not verdict:
        return []
    passed = verdict.get("passed")
    word = "PASSED" if passed is True else "NOT MET" if passed is False else "VERDICT"
    message = str(verdict.get("message") or "no message given").rstrip(".")
    # The evaluation may already lead its message with the word; it is not said twice.
    if not message.upper().startswith((word, "NOT SHOWN")):
        message = f"{word}: {message}"
    return [f"**{message}.**"]


# Beyond-accuracy columns of the headline table: header, where the value sits, its format.
_BEYOND_COLUMNS: tuple[
    tuple[str, Callable[[Mapping[str, Any]], float], Callable[[float], str]], ...
] = (
    ("coverage", lambda b: _number(b.get("coverage")), _percent),
    ("popularity rank", lambda b: _number(b.get("popularity_rank")), _short),
    ("p50 ms", lambda b: _latency(b, "p50"), _short),
    ("p99 ms", lambda b: _latency(b, "p99"), _short),
    ("train s", lambda b: _number(b.get("train_seconds")), _short),
)


def _headline_section(results: Mapping[str, Any]) -> str:
    """Return the headline table: every metric at the largest k, plus beyond-accuracy numbers."""
    picked = _headline(results)
    if picked is None:
        return ""
    target, group = picked
    data = _group_results(results, target, group)
    ks, metrics = _ks(results, data), _metrics(results, data)
    if not data or not ks or not metrics:
        return ""
    k = ks[-1]
    keys = _order(results, data)
    scores = _best_in_bold([[_value(data[key], k, m) for m in metrics] for key in keys])
    extras = [
        (header, get, text)
        for header, get, text in _BEYOND_COLUMNS
        if any(math.isfinite(get(_beyond(results, key))) for key in keys)
    ]
    header = ["strategy", "kind", *(_metric_header(m, k) for m in metrics)]
    header += [name for name, _, _ in extras]
    rows = [
        [
            _cell(_name(results, key)),
            _cell(((results.get("strategies") or {}).get(key) or {}).get("kind", "")),
            *scores[i],
            *(text(get(_beyond(results, key))) for _, get, text in extras),
        ]
        for i, key in enumerate(keys)
    ]
    info = _groups(results, target)[group]
    target_label = (_targets(results)[target] or {}).get("label")
    about = f"Target `{target}`" + (f": {target_label}." if target_label else ".")
    who = [str(info["label"])] if info.get("label") else []
    who += [f"{_count(info['users'])} users"] if info.get("users") is not None else []
    about += f" User group `{group}`" + (f": {', '.join(who)}." if who else ".")
    about += f" Metrics at k = {k}; bold marks the best value of each metric column."
    return "\n\n".join(["## Headline", about, _table(header, rows, text_columns=2)])


def _targets_section(results: Mapping[str, Any]) -> str:
    """Return, per target, NDCG and Recall at every k, then the main metric by user group."""
    targets = _targets(results)
    if not targets:
        return ""
    blocks = ["## By target"]
    legend = _group_legend(results)
    if legend:
        blocks.append(legend)
    for target, info in targets.items():
        groups = (info or {}).get("groups") or {}
        blocks.append(f"### {target}" + (f": {info['label']}" if info.get("label") else ""))
        group = _default_group(groups)
        if group is not None:
            blocks.extend(_by_k_table(results, target, group))
        blocks.extend(_by_group_table(results, target))
    return "\n\n".join(blocks)


def _group_legend(results: Mapping[str, Any]) -> str:
    """Return one line naming every user group once."""
    labels: dict[str, str] = {}
    for target in _targets(results):
        for group, info in _groups(results, target).items():
            if (info or {}).get("label"):
                labels.setdefault(group, str(info["label"]))
    if not labels:
        return ""
    return "User groups: " + "; ".join(f"`{g}` {label}" for g, label in labels.items()) + "."


def _by_k_table(results: Mapping[str, Any], target: str, group: str) -> list[str]:
    """Return a caption and a table of NDCG and Recall at every k for one user group."""
    data = _group_results(results, target, group)
    ks, metrics = _ks(results, data), _metrics(results, data)
    columns = [(m, k) for m in ("ndcg", "recall") if m in metrics for k in ks]
    if not data or not columns:
        return []
    keys = _order(results, data)
    scores = _best_in_bold([[_value(data[key], k, m) for m, k in columns] for key in keys])
    header = ["strategy", *(_metric_header(m, k) for m, k in columns)]
    rows = [[_cell(_name(results, key)), *scores[i]] for i, key in enumerate(keys)]
    users = _groups(results, target)[group].get("users")
    count = f" ({_count(users)} users)" if users is not None else ""
    return [f"User group `{group}`{count}:", _table(header, rows)]


def _by_group_table(results: Mapping[str, Any], target: str) -> list[str]:
    """Return a caption and a table of the main metric at the largest k, one column per group."""
    groups = _scored_groups(results, target)
    if len(groups) < 2:
        return []  # one group: the table above already shows it
    all_data = {key: per_k for info in groups.values() for key, per_k in info["results"].items()}
    ks, metric = _ks(results, all_data), _main_metric(_metrics(results, all_data))
    if not ks or metric is None:
        return []
    k = ks[-1]
    keys = _order(results, all_data)
    scores = _best_in_bold(
        [[_value(info["results"].get(key), k, metric) for info in groups.values()] for key in keys]
    )
    header = ["strategy"] + [
        f"{g} ({_count(info['users'])})" if info.get("users") is not None else g
        for g, info in groups.items()
    ]
    rows = [[_cell(_name(results, key)), *scores[i]] for i, key in enumerate(keys)]
    return [f"{_metric_header(metric, k)} by user group (users):", _table(header, rows)]


def _session_metrics(data: Mapping[str, Any]) -> list[str]:
    """Return the session protocol's metric names (numbers, not latencies): HR and MRR first."""
    found = [
        m
        for values in data.values()
        for m, value in (values or {}).items()
        if not isinstance(value, Mapping)
    ]
    return list(dict.fromkeys([m for m in ("hit_rate", "mrr") if m in found] + found))


def _session_section(results: Mapping[str, Any]) -> str:
    """Return the next-item-in-a-visit table, when that protocol ran."""
    session = results.get("session") or {}
    data = session.get("results") or {}
    if not data:
        return ""
    metrics = _session_metrics(data)
    k = session.get("k", "k")
    keys = _order(results, data)
    scores = _best_in_bold([[_number((data[key] or {}).get(m)) for m in metrics] for key in keys])
    latencies = [_latency(data[key] or {}, "p50") for key in keys]
    timed = any(math.isfinite(latency) for latency in latencies)
    header = ["strategy", *(_metric_header(m, k) for m in metrics)] + (["p50 ms"] if timed else [])
    rows = [
        [_cell(_name(results, key)), *scores[i], *([_short(latencies[i])] if timed else [])]
        for i, key in enumerate(keys)
    ]
    counts = [
        f"{_count(session[key])} {key}" for key in ("sessions", "predictions") if key in session
    ]
    about = str(session.get("label") or "Next item in a visit")
    about += f": {', '.join(counts)}." if counts else "."
    return "\n\n".join(["## Session protocol", about, _table(header, rows)])


def _comparisons_section(results: Mapping[str, Any]) -> str:
    """Return the A/B comparisons with their bootstrap intervals and whether they exclude 0."""
    comparisons = results.get("comparisons") or []
    if not comparisons:
        return ""
    header = ["A", "B", "target", "group", "metric", "A mean", "B mean", "B − A", "CI", "result"]
    rows = []
    for c in comparisons:
        a_mean, b_mean = _number(c.get("a_mean")), _number(c.get("b_mean"))
        diff = _number(c.get("diff")) if "diff" in c else b_mean - a_mean
        low, high, level = _number(c.get("low")), _number(c.get("high")), _number(c.get("level"))
        known = math.isfinite(low) and math.isfinite(high)
        interval = f"[{low:+.4f}, {high:+.4f}]" if known else DASH
        if known and math.isfinite(level):
            interval += f" ({level:.0%})"
        result = DASH if not known else "significant" if low > 0 or high < 0 else "not significant"
        rows.append(
            [
                _cell(_name(results, str(c.get("a", "")))),
                _cell(_name(results, str(c.get("b", "")))),
                _cell(c.get("target", "")),
                _cell(c.get("group", "")),
                _cell(c.get("metric", "")),
                _metric_text(a_mean),
                _metric_text(b_mean),
                f"{diff:+.4f}" if math.isfinite(diff) else DASH,
                interval,
                result,
            ]
        )
    about = "B − A with a bootstrap confidence interval; significant when it excludes 0."
    return "\n\n".join(["## Comparisons", about, _table(header, rows, text_columns=5)])


def _plots_section(plots: Sequence[Path], skipped: str | None) -> str:
    """Return the plots, embedded by relative file name, or why there are none."""
    if skipped:
        return f"## Plots\n\n{skipped}"
    if not plots:
        return ""
    titles = {name: title for name, title, _ in _PLOTS}
    images = [f"![{titles.get(Path(p).name, Path(p).stem)}]({Path(p).name})" for p in plots]
    return "\n\n".join(["## Plots", *images])


def _notes_section(results: Mapping[str, Any]) -> str:
    """Return the free-text notes as a list."""
    notes = results.get("notes") or []
    return "\n\n".join(["## Notes", "\n".join(f"- {note}" for note in notes)]) if notes else ""


def _timings_section(results: Mapping[str, Any]) -> str:
    """Return the seconds each evaluation step took."""
    timings = results.get("timings") or {}
    if not timings:
        return ""
    rows = [[_cell(step), f"{_number(s):.2f}"] for step, s in timings.items()]
    total = sum(v for v in (_number(s) for s in timings.values()) if math.isfinite(v))
    rows.append(["total", f"{total:.2f}"])
    return "\n\n".join(["## Timings", _table(["step", "seconds"], rows)])


# --- plots ----------------------------------------------------------------------------------


def _write_plots(results: Mapping[str, Any], out: Path) -> tuple[tuple[Path, ...], str | None]:
    """Draw every plot the results have data for into `out`; return them and why none, if so."""
    # A plot left from an earlier report in this folder would contradict the new results.json.
    for name, _, _ in _PLOTS:
        (out / name).unlink(missing_ok=True)
    try:
        # Figures made directly (not through pyplot) need no display, switch no process-wide
        # backend, and are freed with their last reference.
        from matplotlib.figure import Figure
    except ImportError:
        return (), PLOTS_SKIPPED

    written = []
    for name, _, draw in _PLOTS:
        figure = Figure()
        if draw(figure, results):
            figure.tight_layout()
            figure.savefig(out / name, dpi=DPI)
            written.append(out / name)
    return tuple(written), None


@dataclass(frozen=True)
class _Style:
    """How one strategy is drawn in every plot."""

    colour: str
    marker: str
    line: str
    hatch: str
    engine: bool

    def line_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `Axes.plot`: engines thick, large and on top."""
        return {
            "color": self.colour,
            "marker": self.marker,
            "linestyle": self.line,
            "linewidth": 2.8 if self.engine else 1.3,
            "markersize": 11 if self.engine else 5,
            "zorder": 3 if self.engine else 2,
        }

    def bar_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `Axes.bar`: the hatch, if any, drawn in white over the colour."""
        return {
            "color": self.colour,
            "hatch": self.hatch or None,
            "edgecolor": "white",
            "linewidth": 0.4,
            "zorder": 3 if self.engine else 2,
        }


def _styles(results: Mapping[str, Any], keys: Sequence[str]) -> dict[str, _Style]:
    """Give every strategy in `keys` its own style; engines (kind "engine") the bold ones."""
    styles = {}
    engines = others = 0
    for key in keys:
        if _kind(results, key) == "engine":
            colour = _ENGINE_COLOURS[engines % len(_ENGINE_COLOURS)]
            line = _LINES[engines // len(_ENGINE_COLOURS) % len(_LINES)]
            styles[key] = _Style(colour, "*", line, "", engine=True)
            engines += 1
        else:
            turn = others // len(_COLOURS) % len(_LINES)
            colour, marker = _COLOURS[others % len(_COLOURS)], _MARKERS[others % len(_MARKERS)]
            styles[key] = _Style(colour, marker, _LINES[turn], _HATCHES[turn], engine=False)
            others += 1
    return styles


def _kind(results: Mapping[str, Any], key: str) -> str:
    """Return a strategy's kind: engine, strategy, baseline (or "other")."""
    return str(((results.get("strategies") or {}).get(key) or {}).get("kind") or "other")


def _legend_right(figure: Figure) -> None:
    """Place the legend right of the last plot, where it hides no line or bar."""
    figure.axes[-1].legend(
        loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False
    )


def _draw_metric_vs_k(figure: Figure, results: Mapping[str, Any]) -> bool:
    """Draw NDCG and Recall against k, one line per strategy, on the headline target and group."""
    picked = _headline(results)
    data = _group_results(results, *picked) if picked else {}
    ks, metrics = _ks(results, data), _metrics(results, data)
    shown = [m for m in ("ndcg", "recall") if m in metrics]
    if not data or not ks or not shown:
        return False
    figure.set_size_inches(4.5 * len(shown) + 2.5, 4)
    axes = figure.subplots(1, len(shown), squeeze=False)[0]
    keys = _order(results, data)
    styles = _styles(results, keys)
    for ax, metric in zip(axes, shown, strict=True):
        for key in keys:
            values = [_value(data[key], k, metric) for k in ks]
            ax.plot(ks, values, label=_name(results, key), **styles[key].line_kwargs())
        ax.set_xticks(ks)
        ax.set_xlabel("k")
        ax.set_title(f"{_METRIC_NAMES[metric]}@k")
        ax.grid(alpha=0.3)
    _legend_right(figure)
    return True


def _draw_by_group(figure: Figure, results: Mapping[str, Any]) -> bool:
    """Draw the main metric at the largest k per user group, one bar per strategy.

    A group of fewer than FEW_USERS users is drawn faded and labelled with its size, so a mean
    over one user does not stand as tall as one over a thousand unremarked.
    """
    picked = _headline(results)
    groups = _scored_groups(results, picked[0]) if picked else {}
    all_data = {key: per_k for info in groups.values() for key, per_k in info["results"].items()}
    ks, metric = _ks(results, all_data), _main_metric(_metrics(results, all_data))
    if not groups or not ks or metric is None:
        return False
    k, keys = ks[-1], _order(results, all_data)
    figure.set_size_inches(max(6.0, 1.3 * len(groups) + 3.5), 4.2)
    ax = figure.subplots()
    width = 0.8 / len(keys)
    x = np.arange(len(groups))
    styles = _styles(results, keys)
    few = [_few_users(info) for info in groups.values()]
    tallest = np.zeros(len(groups))
    for i, key in enumerate(keys):
        heights = [_value(info["results"].get(key), k, metric) for info in groups.values()]
        tallest = np.fmax(tallest, heights)
        bars = ax.bar(
            x + (i - (len(keys) - 1) / 2) * width,
            heights,
            width,
            label=_name(results, key),
            **styles[key].bar_kwargs(),
        )
        for bar, faded in zip(bars, few, strict=True):
            if faded:
                bar.set_alpha(0.3)
    for j, info in enumerate(groups.values()):
        if few[j]:
            ax.annotate(
                f"n={_count(info['users'])}",
                (x[j], tallest[j]),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize="small",
                fontstyle="italic",
            )
    ticks = [f"{g}\n({_count(v['users'])})" if "users" in v else g for g, v in groups.items()]
    ax.set_xticks(x, ticks, fontsize="small")
    ax.margins(y=0.1)  # room for the size labels above the tallest bars
    if any(few):
        ax.set_xlabel(f"(users); faded: under {FEW_USERS} users, too few to read", fontsize="small")
    ax.set_ylabel(_metric_header(metric, k))
    ax.set_title(f"{_metric_header(metric, k)} by user group: {picked[0] if picked else ''}")
    ax.grid(axis="y", alpha=0.3)
    _legend_right(figure)
    return True


def _few_users(group: Mapping[str, Any]) -> bool:
    """Whether a user group is too small for its mean to be read (its size known)."""
    users = _number(group.get("users"))
    return math.isfinite(users) and users < FEW_USERS


def _draw_latency_vs_quality(figure: Figure, results: Mapping[str, Any]) -> bool:
    """Draw p50 latency against the main metric, one labelled point per strategy that has both."""
    from matplotlib.ticker import FuncFormatter

    picked = _headline(results)
    data = _group_results(results, *picked) if picked else {}
    ks, metric = _ks(results, data), _main_metric(_metrics(results, data))
    if not data or not ks or metric is None:
        return False
    k = ks[-1]
    points: dict[str, list[tuple[float, float, str]]] = {}  # kind -> (latency, quality, label)
    for key in _order(results, data):
        latency, quality = _latency(_beyond(results, key), "p50"), _value(data[key], k, metric)
        # A log axis cannot place 0 ms; such a strategy is left out like one without latency.
        if math.isfinite(latency) and latency > 0 and math.isfinite(quality):
            kind = _kind(results, key)
            points.setdefault(kind, []).append((latency, quality, _name(results, key)))
    if not points:
        return False
    figure.set_size_inches(8, 5)
    ax = figure.subplots()
    kind_markers = iter(_MARKERS)
    for kind, group in points.items():
        xs, ys = [p[0] for p in group], [p[1] for p in group]
        if kind == "engine":  # black stars on top, as in the other plots
            ax.scatter(xs, ys, s=180, marker="*", color="black", zorder=3, label=kind)
        else:
            ax.scatter(xs, ys, marker=next(kind_markers), zorder=2, label=kind)
    ax.set_xscale("log")
    ax.margins(x=0.25, y=0.1)  # room for the labels of the outermost points
    _label_points(ax, [point for group in points.values() for point in group])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 0.01, not 10⁻²
    ax.set_xlabel("p50 latency (ms, log scale)")
    ax.set_ylabel(_metric_header(metric, k))
    ax.set_title("Latency against quality")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return True


def _label_points(ax: Axes, points: Sequence[tuple[float, float, str]]) -> None:
    """Label each point above it, or below it when a point just above has its label there."""
    bottom, top = ax.get_ylim()
    left, right = (math.log10(x) for x in ax.get_xlim())
    near_y, near_x = 0.05 * (top - bottom), 0.2 * (right - left)
    above: list[tuple[float, float]] = []  # (log latency, quality) of points labelled above
    for latency, quality, label in sorted(points, key=lambda p: -p[1]):
        x = math.log10(latency)
        crowded = any(abs(x - px) < near_x and py - quality < near_y for px, py in above)
        if not crowded:
            above.append((x, quality))
        ax.annotate(
            label,
            (latency, quality),
            xytext=(5, -11) if crowded else (5, 4),
            textcoords="offset points",
            fontsize="small",
        )


def _draw_session(figure: Figure, results: Mapping[str, Any]) -> bool:
    """Draw the session protocol's HR and MRR, one pair of bars per strategy."""
    session = results.get("session") or {}
    data = session.get("results") or {}
    metrics = _session_metrics(data)
    if not data or not metrics:
        return False
    keys = _order(results, data)
    figure.set_size_inches(8, 0.3 * len(keys) * len(metrics) + 1.2)
    ax = figure.subplots()
    height = 0.8 / len(metrics)
    y = np.arange(len(keys))
    k = session.get("k", "k")
    for i, metric in enumerate(metrics):
        widths = [_number((data[key] or {}).get(metric)) for key in keys]
        offset = (i - (len(metrics) - 1) / 2) * height
        ax.barh(y + offset, widths, height, label=_metric_header(metric, k))
    ax.set_yticks(y, [_name(results, key) for key in keys], fontsize="small")
    for label, key in zip(ax.get_yticklabels(), keys, strict=True):
        if _kind(results, key) == "engine":
            label.set_fontweight("bold")
    ax.invert_yaxis()  # first strategy on top, as in the table
    ax.set_title("Next item in a visit")
    ax.grid(axis="x", alpha=0.3)
    _legend_right(figure)
    return True


# File name, Markdown title and drawing function of every plot, in report order.
_PLOTS: tuple[tuple[str, str, Callable[[Figure, Mapping[str, Any]], bool]], ...] = (
    ("metric_vs_k.png", "NDCG and Recall against k", _draw_metric_vs_k),
    ("by_group.png", "NDCG by user group", _draw_by_group),
    ("latency_vs_quality.png", "Latency against quality", _draw_latency_vs_quality),
    ("session.png", "Next item in a visit", _draw_session),
)
