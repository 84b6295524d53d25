"""The evaluation report: a shop engineer reads report.md, a script reads results.json."""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.evaluation.report import ReportFiles, render_markdown, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Every plot, in the order the report shows them.
ALL_PLOTS = ["metric_vs_k.png", "by_group.png", "latency_vs_quality.png", "session.png"]


def scores(ndcg: float, recall: float, hit_rate: float = 0.5, mrr: float = 0.2) -> dict[str, Any]:
    """Return one strategy's metrics at k = 10 and k = 20 (the @20 values slightly higher)."""
    at_10 = {"ndcg": ndcg, "recall": recall, "hit_rate": hit_rate, "mrr": mrr}
    at_20 = {name: value + 0.01 for name, value in at_10.items()}
    return {"10": at_10, "20": at_20}


def sample_results() -> dict[str, Any]:
    """Return a small evaluation result with a NaN, a numpy float, two ks and three groups."""
    known = {
        "engine": scores(0.25, 0.30),
        "engine:b": scores(0.27, 0.29),
        "popular": scores(0.10, 0.12),
    }
    known["engine"]["20"]["recall"] = np.float64(0.3123)
    cold = {
        "engine": scores(0.05, 0.06),
        "engine:b": scores(0.05, 0.07),
        "popular": scores(0.08, 0.09),
    }
    cold["engine"]["20"]["ndcg"] = math.nan  # no cold user could be scored on this
    return {
        "title": "Tiny Shop",
        "dataset": {"config": "data/configs/tiny.toml", "events": 12345, "users": 300, "items": 80},
        "split": {
            "cut": "2024-03-01T00:00:00+00:00",
            "holdout": "last 30 days",
            "train_events": 10000,
            "test_events": 2345,
        },
        "ks": [10, 20],
        "metrics": ["recall", "ndcg", "hit_rate", "mrr"],
        "strategies": {
            "engine": {"kind": "engine", "label": "engine default blend"},
            "engine:b": {"kind": "engine", "label": "engine with b.toml"},
            "popular": {"kind": "baseline", "label": "most popular"},
        },
        "global": {
            "targets": {
                "conversion": {
                    "label": "add-to-cart and purchase events",
                    "groups": {
                        "known": {"label": "known users (all)", "users": 1200, "results": known},
                        "long_history": {
                            "label": "five or more visits",
                            "users": 812,
                            "results": copy.deepcopy(known),
                        },
                        "cold": {"label": "no history", "users": 40, "results": cold},
                    },
                },
                "all": {
                    "label": "every event",
                    "groups": {
                        "known": {"label": "known users (all)", "users": 1300, "results": known},
                    },
                },
            },
            "beyond": {
                "engine": {
                    "coverage": 0.31,
                    "popularity_rank": 210.5,
                    "latency_ms": {"mean": 0.2, "p50": 0.15, "p99": 0.9},
                    "train_seconds": 3.2,
                },
                "popular": {
                    "coverage": 0.02,
                    "popularity_rank": 5.0,
                    "latency_ms": {"mean": 0.01, "p50": 0.008, "p99": 0.05},
                    "train_seconds": 0.1,
                },
            },
        },
        "session": {
            "label": "next item in a visit (30-min sessions / baskets)",
            "k": 20,
            "sessions": 5000,
            "predictions": 20000,
            "results": {
                "engine": {
                    "hit_rate": 0.12,
                    "mrr": 0.05,
                    "latency_ms": {"mean": 0.3, "p50": 0.25, "p99": 1.5},
                },
                "item_knn": {"hit_rate": 0.10, "mrr": np.float32(0.04)},
            },
        },
        "comparisons": [
            {
                "a": "engine",
                "b": "engine:b",
                "target": "conversion",
                "group": "known",
                "metric": "ndcg@20",
                "a_mean": 0.26,
                "b_mean": 0.28,
                "diff": 0.02,
                "low": 0.004,
                "high": 0.031,
                "level": 0.95,
            },
            {
                "a": "engine",
                "b": "popular",
                "target": "conversion",
                "group": "cold",
                "metric": "ndcg@20",
                "a_mean": 0.06,
                "b_mean": 0.09,
                "diff": 0.03,
                "low": -0.01,
                "high": 0.07,
                "level": 0.95,
            },
        ],
        "verdict": {
            "target": "conversion",
            "group": "known",
            "metric": "ndcg@20",
            "engine": 0.26,
            "best_baseline": "popular",
            "baseline_value": 0.11,
            "margin": 1.36,
            "required": 0.05,
            "passed": True,
            "message": "the engine beats every baseline by 136% on ndcg@20",
        },
        "headline": {"target": "conversion", "group": "known"},
        "timings": {"split": 0.5, "fit": 3.0, "score": 10.0},
        "notes": ["weights were not tuned on this holdout"],
    }


def minimal_results() -> dict[str, Any]:
    """Return a result without session, comparisons, beyond-accuracy numbers or notes."""
    results = sample_results()
    for part in ("session", "comparisons", "notes", "timings", "headline"):
        del results[part]
    del results["global"]["beyond"]
    return results


def section(markdown: str, heading: str) -> str:
    """Return the text under one `## ` heading, up to the next one."""
    start = markdown.index(f"\n## {heading}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end >= 0 else None]


def row(text: str, label: str) -> list[str]:
    """Return the cells of the first table row whose first cell is `label`."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == label:
            return cells
    raise AssertionError(f"no row {label!r} in:\n{text}")


def test_report_writes_markdown_json_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "reports" / "tiny"  # parents are created too

    files = write_report(sample_results(), out)

    assert files == ReportFiles(
        markdown=out / "report.md",
        json=out / "results.json",
        plots=tuple(out / name for name in ALL_PLOTS),
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["report.md", "results.json", *ALL_PLOTS]
    )
    for plot in files.plots:
        data = plot.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert len(data) > 5_000
    markdown = files.markdown.read_text(encoding="utf-8")
    for name in ALL_PLOTS:
        assert f"]({name})" in markdown  # by relative name, so the folder can be moved


def test_results_json_holds_every_number_with_nan_as_null(tmp_path: Path) -> None:
    results = sample_results()
    untouched = copy.deepcopy(results)

    files = write_report(results, tmp_path)

    assert results == untouched  # the caller's dict is not converted in place
    text = files.json.read_text(encoding="utf-8")
    assert "NaN" not in text
    loaded = json.loads(text)
    known = loaded["global"]["targets"]["conversion"]["groups"]["known"]["results"]
    assert known["engine"]["20"]["recall"] == 0.3123  # a numpy float, written as a number
    assert known["engine:b"]["10"] == {"ndcg": 0.27, "recall": 0.29, "hit_rate": 0.5, "mrr": 0.2}
    cold = loaded["global"]["targets"]["conversion"]["groups"]["cold"]["results"]
    assert cold["engine"]["20"]["ndcg"] is None
    assert loaded["session"]["results"]["item_knn"]["mrr"] == pytest.approx(0.04)
    assert loaded["dataset"]["events"] == 12345
    assert loaded["verdict"]["passed"] is True
    assert loaded["comparisons"][1]["low"] == -0.01
    assert loaded["ks"] == [10, 20]


def test_markdown_leads_with_data_split_and_verdict() -> None:
    markdown = render_markdown(sample_results())

    title, intro = markdown.split("\n\n")[:2]
    assert title == "# Offline evaluation: Tiny Shop"
    assert "(`data/configs/tiny.toml`): 12,345 events, 300 users, 80 items" in intro
    assert "2024-03-01T00:00:00+00:00" in intro
    assert "holdout: last 30 days" in intro
    assert "**PASSED: the engine beats every baseline by 136% on ndcg@20.**" in intro


def test_markdown_says_plainly_when_the_engine_does_not_beat_the_baselines() -> None:
    results = sample_results()
    results["verdict"].update(passed=False, margin=0.01, message="1% above popular, 5% needed")

    markdown = render_markdown(results)

    assert "**NOT MET: 1% above popular, 5% needed.**" in markdown
    assert "PASSED" not in markdown


def test_verdict_word_is_not_repeated_when_the_message_already_leads_with_it() -> None:
    results = sample_results()
    results["verdict"]["message"] = "PASSED: the engine's ndcg@20 is 0.2600, +136.4% over popular"

    markdown = render_markdown(results)

    assert "**PASSED: the engine's ndcg@20 is 0.2600, +136.4% over popular.**" in markdown
    assert markdown.count("PASSED") == 1


def test_headline_table_marks_the_best_value_of_each_metric_in_bold() -> None:
    headline = section(render_markdown(sample_results()), "Headline")

    header = row(headline, "strategy")
    assert header == [
        "strategy",
        "kind",
        "Recall@20",
        "NDCG@20",
        "HR@20",
        "MRR@20",
        "coverage",
        "popularity rank",
        "p50 ms",
        "p99 ms",
        "train s",
    ]
    engine = row(headline, "engine default blend")
    assert engine[:4] == ["engine default blend", "engine", "**0.3123**", "0.2600"]
    assert engine[6:] == ["31.0%", "210", "0.15", "0.9", "3.2"]
    other = row(headline, "engine with b.toml")
    assert other[2:4] == ["0.3000", "**0.2800**"]
    assert other[6:] == ["–"] * 5  # no beyond-accuracy numbers for this configuration
    assert row(headline, "most popular")[2:4] == ["0.1300", "0.1100"]


def test_metric_nobody_could_be_scored_on_shows_a_dash() -> None:
    by_target = section(render_markdown(sample_results()), "By target")

    assert "| strategy | known (1,200) | long_history (812) | cold (40) |" in by_target
    engine = row(by_target.split("NDCG@20 by user group")[1], "engine default blend")
    assert engine == ["engine default blend", "0.2600", "0.2600", "–"]
    popular = row(by_target.split("NDCG@20 by user group")[1], "most popular")
    assert popular[3] == "**0.0900**"


def test_each_target_shows_ndcg_and_recall_at_every_k_for_known_users() -> None:
    by_target = section(render_markdown(sample_results()), "By target")

    assert "### conversion: add-to-cart and purchase events" in by_target
    assert "### all: every event" in by_target
    assert "User group `known` (1,200 users):" in by_target
    assert "| strategy | NDCG@10 | NDCG@20 | Recall@10 | Recall@20 |" in by_target
    assert "`long_history` five or more visits" in by_target


def test_target_with_one_user_group_has_no_by_group_table() -> None:
    by_target = section(render_markdown(sample_results()), "By target")

    assert by_target.count("NDCG@20 by user group") == 1  # conversion only, not `all`


def test_render_markdown_embeds_plots_by_relative_file_name() -> None:
    plots = [Path("/srv/reports/2024-03-01/metric_vs_k.png"), Path("/srv/reports/session.png")]

    plots_section = section(render_markdown(sample_results(), plots), "Plots")

    assert "![NDCG and Recall against k](metric_vs_k.png)" in plots_section
    assert "![Next item in a visit](session.png)" in plots_section
    assert "/srv" not in plots_section


def test_session_protocol_shows_hit_rate_and_mrr_with_counts() -> None:
    session = section(render_markdown(sample_results()), "Session protocol")

    assert "5,000 sessions, 20,000 predictions" in session
    assert row(session, "strategy") == ["strategy", "HR@20", "MRR@20", "p50 ms"]
    assert row(session, "engine default blend")[1:] == ["**0.1200**", "**0.0500**", "0.25"]
    assert row(session, "item_knn") == ["item_knn", "0.1000", "0.0400", "–"]


def test_comparison_says_whether_the_interval_excludes_zero() -> None:
    comparisons = section(render_markdown(sample_results()), "Comparisons")

    lines = [line for line in comparisons.splitlines() if line.startswith("| engine default")]
    assert lines[0].split("|")[1:-1] == [
        " engine default blend ",
        " engine with b.toml ",
        " conversion ",
        " known ",
        " ndcg@20 ",
        " 0.2600 ",
        " 0.2800 ",
        " +0.0200 ",
        " [+0.0040, +0.0310] (95%) ",
        " significant ",
    ]
    assert lines[1].endswith("| [-0.0100, +0.0700] (95%) | not significant |")


def test_notes_and_timings_close_the_report() -> None:
    markdown = render_markdown(sample_results())

    assert "## Notes\n\n- weights were not tuned on this holdout" in markdown
    assert row(section(markdown, "Timings"), "total") == ["total", "13.50"]


def test_results_without_session_comparisons_or_beyond_still_render(tmp_path: Path) -> None:
    files = write_report(minimal_results(), tmp_path)

    # No latencies and no session: only the plots the data allows.
    assert [p.name for p in files.plots] == ["metric_vs_k.png", "by_group.png"]
    markdown = files.markdown.read_text(encoding="utf-8")
    for heading in ("Session protocol", "Comparisons", "Notes", "Timings"):
        assert f"## {heading}" not in markdown
    # The verdict names the headline when the results do not.
    assert row(section(markdown, "Headline"), "strategy")[2:] == [
        "Recall@20",
        "NDCG@20",
        "HR@20",
        "MRR@20",
    ]


def test_results_with_only_a_title_render_a_title(tmp_path: Path) -> None:
    files = write_report({"title": "Empty Shop"}, tmp_path)

    assert files.plots == ()
    assert files.markdown.read_text(encoding="utf-8") == "# Offline evaluation: Empty Shop\n"


def test_a_new_report_removes_plots_the_new_results_cannot_back(tmp_path: Path) -> None:
    write_report(sample_results(), tmp_path)

    files = write_report(minimal_results(), tmp_path)

    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["by_group.png", "metric_vs_k.png"]
    assert files.plots == (tmp_path / "metric_vs_k.png", tmp_path / "by_group.png")


def test_without_matplotlib_markdown_and_json_are_still_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `import matplotlib...` now fails, as on a host without it
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)

    files = write_report(sample_results(), tmp_path)

    assert files.plots == ()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "results.json"]
    assert json.loads(files.json.read_text(encoding="utf-8"))["title"] == "Tiny Shop"
    markdown = files.markdown.read_text(encoding="utf-8")
    assert "## Plots\n\nPlots skipped: matplotlib is not installed" in markdown
    assert 'pip install "recsys-shop[report]"' in markdown
    assert "**PASSED: the engine beats every baseline" in markdown


def many_strategies(n: int) -> dict[str, Any]:
    """Return a result with the engine and n baselines, known users and a one-user group."""
    results = minimal_results()
    known = {"engine": scores(0.30, 0.35)}
    known |= {f"baseline{i}": scores(0.01 * i, 0.01 * i) for i in range(n)}
    results["strategies"] = {"engine": {"kind": "engine", "label": "engine"}} | {
        f"baseline{i}": {"kind": "baseline", "label": f"baseline {i}"} for i in range(n)
    }
    results["global"]["targets"] = {
        "conversion": {
            "label": "add-to-cart and purchase events",
            "groups": {
                "known": {"label": "known users", "users": 500, "results": known},
                "tier:new": {"label": "new", "users": 1, "results": copy.deepcopy(known)},
            },
        }
    }
    return results


def test_with_a_dozen_strategies_every_line_has_its_own_style_and_the_engine_is_boldest() -> None:
    from matplotlib.figure import Figure

    from training.evaluation.report import _draw_metric_vs_k

    figure = Figure()
    assert _draw_metric_vs_k(figure, many_strategies(13))
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    assert len(lines) == 14
    styles = {(ln.get_color(), ln.get_marker(), ln.get_linestyle()) for ln in lines.values()}
    assert len(styles) == 14
    engine = lines.pop("engine")
    assert engine.get_color() == "black"
    assert all(engine.get_linewidth() > line.get_linewidth() for line in lines.values())
    assert all(engine.get_zorder() > line.get_zorder() for line in lines.values())


def test_a_group_of_one_user_is_drawn_faded_and_labelled_with_its_size() -> None:
    from matplotlib.figure import Figure

    from training.evaluation.report import _draw_by_group

    figure = Figure()
    assert _draw_by_group(figure, many_strategies(3))
    ax = figure.axes[0]
    assert [text.get_text() for text in ax.texts] == ["n=1"]
    assert "faded: under 20 users" in ax.get_xlabel()
    # Four strategies: the known group's bars first, then the one-user group's, per strategy.
    alphas = [bar.get_alpha() for bar in ax.patches]
    assert alphas == [None, 0.3] * 4
