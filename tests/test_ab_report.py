"""The A/B report on a hand-built experiment whose every number is worked out in the comments."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from recsys.errors import SchemaError
from recsys.schema import EventType
from training.evaluation.abreport import (
    ab_report,
    bootstrap_difference,
    format_ab_report,
    minimum_detectable_effect,
    sample_ratio_mismatch,
    write_ab_report,
)

T0 = 1_700_000_000
HOUR = 3_600
DAY = 86_400
VIEW, CART, PURCHASE, RETURN = (
    int(EventType.VIEW),
    int(EventType.CART),
    int(EventType.PURCHASE),
    int(EventType.RETURN),
)
Z = 1.959964 + 0.841621  # z_0.975 + z_0.80


def exposure(time: int, variant: str, user: Any, items: list[int], **extra: Any) -> dict[str, Any]:
    """Return one exposure row of experiment "exp" (anonymous when `user` is None)."""
    row = {
        "time": time,
        "experiment": "exp",
        "variant": variant,
        "user_id": user,
        "visitor_id": None,
        "model_version": "v1",
        "items": items,
        "ranks": list(range(1, len(items) + 1)),
        "sources": ["personal"] * len(items),
    }
    return row | extra


def build_exposures() -> pd.DataFrame:
    """Four control units (one anonymous), four B units (one a crossover), one other experiment."""
    rows = [
        exposure(T0, "control", 1, [101, 102, 103]),
        exposure(T0, "B", "5", [101, 102]),  # user id as text; the events hold the int 5
        exposure(T0, "B", 6, [103, 104]),
        exposure(T0, "B", 8, [108]),
        exposure(T0, "control", 3, [103]),
        exposure(T0, "control", None, [101], visitor_id="v4"),
        exposure(T0 + DAY, "control", 2, [101, 104]),
        exposure(T0 + DAY, "control", 6, [107]),  # u6 again, now in control: a crossover
        exposure(T0 + 2 * DAY, "control", 3, [106]),
        exposure(T0 + 2 * DAY, "B", 7, [105]),
        exposure(T0, "B", 2, [109], experiment="other"),  # another experiment: ignored
    ]
    return pd.DataFrame(rows)


def build_events() -> pd.DataFrame:
    """The shop's events after (and some before) the exposures, as the loader produces them."""
    nan = float("nan")
    rows = [
        # (user, item, event, timestamp, quantity, price)
        # u1 (control): views and carts a shown item, buys it, and had bought before.
        (1, 105, PURCHASE, T0 - 10 * DAY, 1.0, 5.0),
        (1, 102, VIEW, T0 + HOUR, 1.0, nan),
        (1, 102, CART, T0 + HOUR + 1800, 1.0, nan),
        (1, 102, PURCHASE, T0 + 2 * HOUR, 2.0, 10.0),
        # u2 (control, first shown at T0+1d): a view before its exposure, a view of an item only
        # the other experiment showed it; had bought before, does not buy again.
        (2, 101, PURCHASE, T0 - 5 * DAY, 1.0, 3.0),
        (2, 104, VIEW, T0, 1.0, nan),
        (2, 109, VIEW, T0 + DAY + HOUR, 1.0, nan),
        # u3 (control): views 106 a day before its second exposure shows 106; buys after the
        # window (T0 + 8d >= T0 + 7d).
        (3, 106, VIEW, T0 + DAY, 1.0, nan),
        (3, 103, CART, T0 + 8 * DAY, 1.0, nan),
        (3, 103, PURCHASE, T0 + 8 * DAY, 1.0, 9.0),
        # v4 (control, anonymous): the shop logs its visitor id as the user.
        ("v4", 101, VIEW, T0 + HOUR, 1.0, nan),
        # u5 (B): views on day 6, carts, buys 30 + 2 x 15, returns one 15.
        (5, 101, VIEW, T0 + 6 * DAY, 1.0, nan),
        (5, 101, CART, T0 + 6 * DAY + 60, 1.0, nan),
        (5, 101, PURCHASE, T0 + 6 * DAY + HOUR, 1.0, 30.0),
        (5, 102, PURCHASE, T0 + 6 * DAY + HOUR, 2.0, 15.0),
        (5, 102, RETURN, T0 + 6 * DAY + 2 * HOUR, 1.0, 15.0),
        # u6 (B): had bought before; buys an item never shown to it at an unknown price; views a
        # shown item exactly at the window's end.
        (6, 110, PURCHASE, T0 - DAY, 1.0, 8.0),
        (6, 110, PURCHASE, T0 + DAY, 1.0, nan),
        (6, 104, VIEW, T0 + 7 * DAY, 1.0, nan),
        # u7 (B): nothing at all.
        # u8 (B): views in the very second of its exposure, had bought before, buys 3 x 4.
        (8, 108, PURCHASE, T0 - 30 * DAY, 1.0, 2.0),
        (8, 108, VIEW, T0, 1.0, nan),
        (8, 108, PURCHASE, T0 + DAY, 3.0, 4.0),
        # u99 was never exposed.
        (99, 101, PURCHASE, T0 + HOUR, 1.0, 100.0),
    ]
    frame = pd.DataFrame(rows, columns=["user", "item", "event", "timestamp", "quantity", "price"])
    frame["session"] = 0
    frame["category"] = None
    return frame


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    """The report of the hand-built experiment (inputs checked unchanged afterwards)."""
    exposures, events = build_exposures(), build_events()
    out = ab_report(exposures, events, "exp", resamples=2000, seed=1)
    pd.testing.assert_frame_equal(exposures, build_exposures())
    pd.testing.assert_frame_equal(events, build_events())
    return out


def metric(results: dict[str, Any], variant: str, name: str) -> float:
    """Return one variant's mean of one metric."""
    return float(results["variants"][variant]["metrics"][name]["mean"])


def difference(results: dict[str, Any], name: str) -> dict[str, Any]:
    """Return B's difference to control on one metric."""
    (row,) = [d for d in results["differences"] if d["metric"] == name and d["variant"] == "B"]
    return row


def test_units_take_the_variant_of_their_first_exposure_and_crossovers_are_counted(
    results: dict[str, Any],
) -> None:
    # control: u1, u2, u3, v4 = 4 units; B: u5, u6, u7, u8 = 4 (u6 stays in B, where it started).
    # Lists shown: control u1, u2, u3 twice, v4, and u6's crossover list = 6; B: 4.
    assert results["control"] == "control"
    assert results["variants"]["control"]["units"] == 4
    assert results["variants"]["control"]["anonymous_units"] == 1
    assert results["variants"]["control"]["exposures"] == 6
    assert results["variants"]["B"]["units"] == 4
    assert results["variants"]["B"]["exposures"] == 4
    assert results["crossovers"] == 1
    assert any("1 unit(s) were shown more than one variant" in n for n in results["notes"])


def test_click_through_counts_only_shown_items_acted_on_after_showing_within_the_window(
    results: dict[str, Any],
) -> None:
    # control: u1 views shown 102 (1); u2 viewed 104 before its exposure and 109 that only the
    # other experiment showed (0); u3 viewed 106 a day before it was shown (0); v4 views 101 (1)
    # -> 2/4. B: u5 views 101 on day 6 (1); u6 buys 110, never shown, and views shown 104 at
    # T0 + 7d, the window's open end (0); u7 nothing (0); u8 views 108 in the exposure's
    # second (1) -> 2/4.
    assert metric(results, "control", "click_through") == 0.5
    assert metric(results, "B", "click_through") == 0.5


def test_conversions_revenue_and_repurchase_by_hand(results: dict[str, Any]) -> None:
    # cart: control u1 only (u3's cart is after the window) = 1/4; B u5 only = 1/4.
    assert metric(results, "control", "cart_conversion") == 0.25
    assert metric(results, "B", "cart_conversion") == 0.25
    # purchase: control u1 = 1/4; B u5, u6, u8 = 3/4.
    assert metric(results, "control", "purchase_conversion") == 0.25
    assert metric(results, "B", "purchase_conversion") == 0.75
    # revenue: control u1 2 x 10 = 20, over 4 units = 5.0 (u3's 9 is after the window, u99's
    # 100 is nobody's). B: u5 30 + 2 x 15 - 15 (return) = 45; u6 unknown price = 0; u8 3 x 4 =
    # 12 -> 57 / 4 = 14.25.
    assert metric(results, "control", "revenue_per_unit") == pytest.approx(5.0)
    assert metric(results, "B", "revenue_per_unit") == pytest.approx(14.25)
    # repurchase: control buyers-before u1 (buys again), u2 (does not) = 1/2; B u6, u8 both
    # buy again = 2/2.
    assert metric(results, "control", "repurchase_rate") == 0.5
    assert results["variants"]["control"]["metrics"]["repurchase_rate"]["n"] == 2
    assert metric(results, "B", "repurchase_rate") == 1.0


def test_differences_lifts_and_intervals(results: dict[str, Any]) -> None:
    # B - control: click 0, cart 0, purchase 0.75 - 0.25 = 0.5 (lift 0.5 / 0.25 = 2.0),
    # revenue 14.25 - 5 = 9.25 (lift 1.85), repurchase 1 - 0.5 = 0.5 (lift 1.0).
    expected = {
        "click_through": (0.0, 0.0),
        "cart_conversion": (0.0, 0.0),
        "purchase_conversion": (0.5, 2.0),
        "revenue_per_unit": (9.25, 1.85),
        "repurchase_rate": (0.5, 1.0),
    }
    for name, (diff, lift) in expected.items():
        row = difference(results, name)
        assert row["diff"] == pytest.approx(diff)
        assert row["lift"] == pytest.approx(lift)
        assert row["low"] <= row["diff"] <= row["high"]
        assert row["significant"] == (row["low"] > 0 or row["high"] < 0)
    # Four units an arm cannot show a click difference of 0 to be anything but noise.
    assert not difference(results, "click_through")["significant"]


def test_mde_beside_each_difference_follows_the_formula(results: dict[str, Any]) -> None:
    # purchase: p = 0.25, n = 4 and 4: 2.801585 x sqrt(0.1875 x (1/4 + 1/4)) = 2.801585 x
    # 0.306186 = 0.857807.
    assert difference(results, "purchase_conversion")["mde"] == pytest.approx(0.857807, abs=1e-5)
    # repurchase: only buyers-before count, p = 0.5, n = 2 and 2: 2.801585 x sqrt(0.25) = 1.40079.
    assert difference(results, "repurchase_rate")["mde"] == pytest.approx(1.400793, abs=1e-5)
    # revenue: control [20, 0, 0, 0] variance 100; B [45, 0, 0, 12] mean 14.25, squares
    # 945.5625 + 203.0625 + 203.0625 + 5.0625 = 1356.75, variance 452.25; pooled
    # (3 x 100 + 3 x 452.25) / 6 = 276.125, sd 16.61701; x sqrt(1/2) x 2.801585 = 32.9186.
    assert difference(results, "revenue_per_unit")["mde"] == pytest.approx(32.9186, abs=1e-3)


def test_mde_formula_against_a_hand_computation() -> None:
    # p = 0.1, 1000 units an arm: 2.801585 x sqrt(0.09 x 0.002) = 2.801585 x 0.0134164 = 0.037587.
    control = np.r_[np.ones(100), np.zeros(900)]
    mde = minimum_detectable_effect(control, np.zeros(1000), rate=True)
    assert mde == pytest.approx(0.037587, abs=1e-6)
    assert minimum_detectable_effect(control, np.array([]), rate=True) != mde  # NaN
    assert math.isnan(minimum_detectable_effect(control, np.array([]), rate=True))


def test_sample_ratio_mismatch_flags_900_100_against_50_50_and_not_500_500() -> None:
    # 900/100 against 500/500: (400^2 / 500) x 2 = 640 with 1 degree of freedom.
    srm = sample_ratio_mismatch({"control": 900, "B": 100}, {"control": 0.5, "B": 0.5})
    assert srm["statistic"] == pytest.approx(640.0)
    assert srm["p_value"] == pytest.approx(stats.chi2.sf(640.0, 1))
    assert srm["flagged"]
    assert srm["expected"] == {"control": 500.0, "B": 500.0}
    even = sample_ratio_mismatch({"control": 500, "B": 500})
    assert (even["statistic"], even["p_value"], even["flagged"]) == (0.0, 1.0, False)
    # The same 900/100 is what a 90/10 design expects (shares need not sum to 1).
    assert not sample_ratio_mismatch({"control": 900, "B": 100}, {"control": 9, "B": 1})["flagged"]


def split_exposures(control: int, variant: int) -> pd.DataFrame:
    """Return one exposure per unit: `control` units in control, then `variant` in B."""
    names = ["control"] * control + ["B"] * variant
    return pd.DataFrame(
        [exposure(T0 + i, name, i, [1]) for i, name in enumerate(names)],
    )


def test_report_flags_srm_for_a_900_100_split_of_units() -> None:
    events = build_events().iloc[:0]
    flagged = ab_report(split_exposures(900, 100), events, "exp", resamples=50)
    assert flagged["srm"]["flagged"]
    assert flagged["srm"]["observed"] == {"control": 900, "B": 100}
    assert flagged["notes"][0].startswith("Sample-ratio mismatch")
    fine = ab_report(split_exposures(500, 500), events, "exp", resamples=50)
    assert not fine["srm"]["flagged"]
    assert fine["srm"]["p_value"] == pytest.approx(1.0)


def test_a_variant_expected_but_never_shown_is_a_mismatch() -> None:
    srm = sample_ratio_mismatch({"control": 60, "B": 40}, {"control": 1, "B": 1, "C": 1})
    assert srm["observed"] == {"control": 60, "B": 40, "C": 0}
    assert srm["flagged"]


def test_control_defaults_to_the_variant_named_control_else_the_first_shown() -> None:
    exposures = build_exposures()
    events = build_events()
    assert ab_report(exposures, events, "exp", resamples=20)["control"] == "control"
    renamed = exposures.assign(variant=exposures["variant"].replace({"control": "A"}))
    # The first row of the experiment shows "A".
    assert ab_report(renamed, events, "exp", resamples=20)["control"] == "A"
    named = ab_report(renamed, events, "exp", control="B", resamples=20)
    assert list(named["variants"]) == ["B", "A"]
    assert {d["variant"] for d in named["differences"]} == {"A"}


def test_bootstrap_difference_matches_the_normal_approximation_on_large_arms() -> None:
    rng = np.random.default_rng(3)
    for control, variant in [
        (rng.random(4000) < 0.10, rng.random(4000) < 0.12),  # 0/1: binomial draws
        (rng.exponential(20.0, 3000), rng.exponential(22.0, 3000)),  # revenue: resampled units
    ]:
        a, b = control.astype(float), variant.astype(float)
        interval = bootstrap_difference(a, b, resamples=4000, seed=7)
        se = math.sqrt(a.var() / len(a) + b.var() / len(b))
        assert interval.mean == pytest.approx(b.mean() - a.mean())
        assert interval.low == pytest.approx(interval.mean - 1.96 * se, abs=0.1 * se)
        assert interval.high == pytest.approx(interval.mean + 1.96 * se, abs=0.1 * se)
        same = bootstrap_difference(a, b, resamples=4000, seed=7)
        assert (same.low, same.high) == (interval.low, interval.high)


def test_unknown_experiment_and_missing_columns_are_named() -> None:
    with pytest.raises(ValueError) as caught:
        ab_report(build_exposures(), build_events(), "nope")
    assert str(caught.value) == (
        "no exposures of experiment 'nope' (11 exposures, experiments seen: ['exp', 'other'])"
    )
    with pytest.raises(SchemaError) as missing:
        ab_report(build_exposures(), build_events().drop(columns="timestamp"), "exp")
    assert str(missing.value) == (
        "events lack column(s) ['timestamp'] (got ['user', 'item', 'event', 'quantity', "
        "'price', 'session', 'category']); expected at least ['user', 'item', 'event', "
        "'timestamp']"
    )
    with pytest.raises(ValueError) as shares:
        ab_report(build_exposures(), build_events(), "exp", expected_shares={"control": 1.0})
    assert str(shares.value) == (
        "expected_shares has no share for variant(s) ['B'] seen in the exposures (got shares "
        "for ['control']); give every variant a share"
    )


def test_an_exposure_without_time_is_refused() -> None:
    exposures = build_exposures()
    exposures.loc[4, "time"] = None
    with pytest.raises(SchemaError) as caught:
        ab_report(exposures, build_events(), "exp")
    assert str(caught.value) == (
        "exposures of experiment 'exp': 1 row(s) without a time or variant (first at row 4); "
        "every exposure needs both"
    )


def test_terminal_summary_shows_differences_srm_and_notes(results: dict[str, Any]) -> None:
    text = format_ab_report(results)
    assert text.splitlines()[0] == (
        "A/B experiment 'exp': control 'control', window 7 days, 95% intervals"
    )
    assert "B vs control:" in text
    purchase = next(line for line in text.splitlines() if "purchase_conversion" in line)
    assert "0.2500" in purchase and "0.7500" in purchase and "+0.5000" in purchase
    assert "+200.0%" in purchase
    assert "sample ratio: chi2 = 0.00, p = 1 (ok; flagged below 0.001)" in text
    assert "crossovers: 1" in text


def test_report_files_markdown_json_and_plot(results: dict[str, Any], tmp_path: Path) -> None:
    files = write_ab_report(results, tmp_path / "ab")
    data = json.loads(files.json.read_text(encoding="utf-8"))
    assert data["variants"]["B"]["metrics"]["revenue_per_unit"]["mean"] == pytest.approx(14.25)
    assert data["srm"]["flagged"] is False
    assert {d["metric"] for d in data["differences"]} == set(results["variants"]["B"]["metrics"])
    markdown = files.markdown.read_text(encoding="utf-8")
    assert "# A/B experiment `exp`" in markdown
    assert "| `B` | purchase_conversion | +0.5000 |" in markdown
    assert "![metrics per variant](ab_metrics.png)" in markdown
    assert "Repurchase rate: among units that bought anything before" in markdown
    assert files.plot is not None
    assert files.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_markdown_and_json_are_still_written(
    results: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_ab_report(results, tmp_path)  # a plot from an earlier run must not survive
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    files = write_ab_report(results, tmp_path)
    assert files.plot is None
    assert not (tmp_path / "ab_metrics.png").exists()
    assert files.json.exists()
    markdown = files.markdown.read_text(encoding="utf-8")
    assert "## Plot\n\nPlots skipped: matplotlib is not installed" in markdown
