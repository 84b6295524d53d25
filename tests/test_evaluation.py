"""`recsys evaluate`: a shop engineer compares the engine with its parts and simple baselines.

Everything runs on one small generated shop whose numbers can be counted by hand: regular
customers rebuy the same three staples every ten days, a few light customers bought one item
once, new customers turn up only in the last ten days, and two items are first sold after the
cut.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recsys.config import Config, load_config
from recsys.errors import ConfigError, NotEnoughHistoryError
from training.cli import EXIT_BAD_INPUT, EXIT_OK, main
from training.evaluation.evaluate import evaluate, format_summary

DAY = 86_400
HOUR = 3_600
T0 = 1_699_920_000  # 2023-11-14 00:00 UTC: "day 0"
# The newest event is on day 59 at noon; holding out 10 days cuts on day 49 at noon.
NEWEST = T0 + 59 * DAY + 12 * HOUR
CUT = NEWEST - 10 * DAY

REGULARS = 60  # c0..c59
NEW_ITEM_BUYERS = 25  # c0..c24 buy new0 and new1 after the cut
LIGHT = 5  # l0..l4

# Held-out visits (the session protocol replays every visit after the cut):
#   c0..c59: one visit on day 50-54, two views then a basket of three staples, five distinct
#            items: 4 next-item predictions each                      60 visits, 240 predictions
#   c0..c24: a basket of new0 and new1 on day 57: 1 prediction each   25 visits,  25 predictions
#   k0..k3:  three visits (a view, then a basket of two): 2 each      12 visits,  24 predictions
#   k4:      one such visit                                            1 visit,    2 predictions
#   k5:      one such visit, then sku1, sku1, sku2 viewed: the repeated sku1 is a reload, so
#            that visit has 2 items, 1 prediction                      2 visits,   3 predictions
#   k6:      two baskets one minute apart, two items each: two visits  2 visits,   2 predictions
#   l0..l4:  one item bought (and l0's last look): one item a visit, nothing to predict
HELD_OUT_VISITS = 60 + 25 + 12 + 1 + 2 + 2
NEXT_ITEM_PREDICTIONS = 240 + 25 + 24 + 2 + 3 + 2

ENGINE_PARTS = ["only:personal", "only:neighbours", "only:repurchase", "only:complementary"]
# The shop has no categories: category reach has nothing to reach with.
BROWSE_PARTS = ["only:reminder"]
# Neighbour baskets (TIFU-KNN) run alone after the browse parts.
BASKET_PARTS = ["only:baskets"]
BASELINES = ["popular", "trending", "buy_again", "recent_items", "implicit_als", "item_knn"]


def shop_rows() -> list[tuple[str, str, str, int, str]]:
    """(customer, sku, type, ts, order) rows of the shop; views have no order."""
    rows: list[tuple[str, str, str, int, str]] = []

    def add(user: str, item: str, kind: str, ts: int, order: str = "") -> None:
        rows.append((user, item, kind, ts, order))

    for u in range(REGULARS):
        # Staples 3u..3u+2 (mod 30); every item is a staple of six customers.
        staples = [f"sku{(3 * u + j) % 30}" for j in range(3)]
        for visit in range(6):  # days u % 5 + 0, 10, ..., 50: the last one after the cut
            at = T0 + (u % 5 + 10 * visit) * DAY + 10 * HOUR + 60 * u
            add(f"c{u}", f"sku{(3 * u + 10 + visit) % 30}", "view", at - 300)
            add(f"c{u}", f"sku{(3 * u + 20 + visit) % 30}", "view", at - 240)
            for item in staples:
                add(f"c{u}", item, "buy", at, f"b{u}-{visit}")
        if u < NEW_ITEM_BUYERS:
            at = T0 + 57 * DAY + 10 * HOUR + 60 * u
            add(f"c{u}", "new0", "buy", at, f"n{u}")
            add(f"c{u}", "new1", "buy", at, f"n{u}")
    for i in range(LIGHT):  # one item on day 20 (their whole history), again on day 56
        add(f"l{i}", f"sku{5 * i}", "buy", T0 + 20 * DAY + 10 * HOUR, f"la{i}")
        add(f"l{i}", f"sku{5 * i}", "buy", T0 + 56 * DAY + 10 * HOUR, f"lb{i}")
    # Cold customers, first seen after the cut.
    for i, days in enumerate([(52, 55, 58)] * 4 + [(53,), (52,)]):
        for visit, day in enumerate(days):
            at = T0 + day * DAY + 9 * HOUR + 60 * i
            add(f"k{i}", f"sku{20 + i}", "view", at - 120)
            add(f"k{i}", f"sku{2 * i}", "buy", at, f"k{i}-{visit}")
            add(f"k{i}", f"sku{2 * i + 1}", "buy", at, f"k{i}-{visit}")
    at = T0 + 56 * DAY + 9 * HOUR
    add("k5", "sku1", "view", at)
    add("k5", "sku1", "view", at + 30)
    add("k5", "sku2", "view", at + 60)
    at = T0 + 53 * DAY + 11 * HOUR
    add("k6", "sku12", "buy", at, "k6-a")
    add("k6", "sku13", "buy", at, "k6-a")
    add("k6", "sku14", "buy", at + 60, "k6-b")
    add("k6", "sku15", "buy", at + 60, "k6-b")
    add("l0", "sku5", "view", NEWEST)
    return rows


def write_shop(folder: Path) -> Path:
    """Write the shop's log as events.csv in folder."""
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(shop_rows(), columns=["customer", "sku", "type", "ts", "order"])
    path = folder / "events.csv"
    frame.to_csv(path, index=False)
    return path


def write_config(
    folder: Path,
    name: str = "shop",
    *,
    max_session_predictions: int = 300,
    blend: str = "",
    events: str = "events.csv",
) -> Path:
    """Write a TOML config reading folder/events; ALS kept tiny so that a run takes seconds."""
    path = folder / f"{name}.toml"
    path.write_text(
        f"""
seed = 11

[events]
path = "{events}"
timestamp_unit = "s"
event_types = {{ buy = "purchase", view = "view" }}
columns = {{ user = "customer", item = "sku", event = "type", timestamp = "ts", session = "order" }}

[models.als]
factors = 8
iterations = 4

[models.neighbours]
k = 10

[evaluation]
max_session_predictions = {max_session_predictions}
bootstrap = 200

[blend]
{blend}

[output]
models = "models"
rejects = "rejects"
""",
        encoding="utf-8",
    )
    return path


def a_shop(folder: Path, **options: Any) -> Config:
    write_shop(folder)
    return load_config(write_config(folder, **options))


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One evaluation of the shop, holding out the last 10 days (shared: read, never change)."""
    config = a_shop(tmp_path_factory.mktemp("shop"))
    return evaluate([config], holdout_days=10, progress=False)


@pytest.fixture
def results(evaluated: dict[str, Any]) -> Iterator[dict[str, Any]]:
    before = copy.deepcopy(evaluated)
    yield evaluated
    assert evaluated == before, "a test changed the shared results"


def users_by_group(results: dict[str, Any], target: str) -> dict[str, int]:
    groups = results["global"]["targets"][target]["groups"]
    return {name: group["users"] for name, group in groups.items()}


def table(results: dict[str, Any], target: str = "conversion") -> dict[str, Any]:
    """Each strategy's metrics by k for known users."""
    known: dict[str, Any] = results["global"]["targets"][target]["groups"]["known"]["results"]
    return known


# --- what is evaluated ---------------------------------------------------------------------


def test_the_results_hold_the_engine_its_parts_and_every_baseline(results: dict[str, Any]) -> None:
    assert list(results["strategies"]) == [
        "engine",
        *ENGINE_PARTS,
        "only:session",
        *BROWSE_PARTS,
        *BASKET_PARTS,
        *BASELINES,
        "last_item",
    ]
    kinds = {name: s["kind"] for name, s in results["strategies"].items()}
    assert kinds["engine"] == "engine"
    parts = [*ENGINE_PARTS, "only:session", *BROWSE_PARTS, *BASKET_PARTS]
    assert {kinds[name] for name in parts} == {"strategy"}
    assert {kinds[name] for name in [*BASELINES, "last_item"]} == {"baseline"}
    in_global = ["engine", *ENGINE_PARTS, *BROWSE_PARTS, *BASKET_PARTS, *BASELINES]
    for target in results["global"]["targets"].values():
        for group in target["groups"].values():
            assert list(group["results"]) == in_global
    assert list(results["global"]["beyond"]) == in_global
    assert results["ks"] == [10, 20]


def test_visit_only_strategies_are_judged_in_the_session_protocol_alone(
    results: dict[str, Any],
) -> None:
    # Without a visit, the session part and the last item's neighbours have nothing to go on;
    # "buy again" of an anonymous visitor would be the popular list.
    assert list(results["session"]["results"]) == [
        "engine",
        "only:personal",
        "only:session",
        "popular",
        "trending",
        "recent_items",
        "implicit_als",
        "item_knn",
        "last_item",
    ]
    assert "only:session" not in table(results) and "last_item" not in table(results)


# --- the split -----------------------------------------------------------------------------


def test_the_split_counts_add_up_to_the_accepted_events(results: dict[str, Any]) -> None:
    rows = shop_rows()
    assert results["dataset"]["events"] == len(rows)  # a clean log: every row accepted
    split = results["split"]
    assert split == {
        "cut": datetime.fromtimestamp(CUT, tz=UTC).isoformat(),
        "holdout": "last 10 days",
        "train_events": sum(ts < CUT for _user, _item, _kind, ts, _order in rows),
        "test_events": sum(ts >= CUT for _user, _item, _kind, ts, _order in rows),
    }
    assert split["train_events"] + split["test_events"] == results["dataset"]["events"]


def test_nothing_after_the_cut_is_seen_by_any_strategy(results: dict[str, Any]) -> None:
    # After the cut, known customers buy only their own staples and the items new0 and new1,
    # first sold on day 57 and by then the two most popular items of the shop. A strategy fitted
    # on the whole log would recommend them; fitted before the cut, none can.
    new_items = table(results, "conversion_new")
    assert users_by_group(results, "conversion_new")["known"] == NEW_ITEM_BUYERS
    for name, by_k in new_items.items():
        for k, metrics in by_k.items():
            assert metrics["hit_rate"] == 0.0, f"{name} found an item sold after the cut at @{k}"
    # The catalogue the strategies know is the 30 items sold before the cut: the popular list
    # covers 20 of those 30 (of 32 in the whole log), with popularity ranks 1..20.
    popular = results["global"]["beyond"]["popular"]
    assert popular["coverage"] == pytest.approx(20 / 30)
    assert popular["popularity_rank"] == pytest.approx(10.5)


# --- targets and user groups ---------------------------------------------------------------


def test_every_target_is_reported_with_user_groups_that_add_up(results: dict[str, Any]) -> None:
    targets = results["global"]["targets"]
    assert list(targets) == ["conversion", "all", "conversion_new", "conversion_repeat"]
    for name in targets:
        users = users_by_group(results, name)
        assert users["long_history"] + users.get("short_history", 0) == users["known"], name
        tiers = {group: n for group, n in users.items() if group.startswith("tier:")}
        assert tiers and sum(tiers.values()) == users["known"], name
    # Regular customers have 13 distinct items before the cut (3 staples, 10 looks); light
    # customers one.
    assert users_by_group(results, "conversion") == {
        "known": REGULARS + LIGHT,
        "long_history": REGULARS,
        "short_history": LIGHT,
        "cold": 5,
        "tier:new": LIGHT,
        "tier:active": REGULARS,
    }
    # Repurchases: everyone known rebought; new to them: only new0 and new1, only c0..c24.
    assert users_by_group(results, "conversion_repeat")["known"] == REGULARS + LIGHT
    assert users_by_group(results, "conversion_new") == {
        "known": NEW_ITEM_BUYERS,
        "long_history": NEW_ITEM_BUYERS,
        "tier:active": NEW_ITEM_BUYERS,
    }


def test_cold_customers_are_asked_with_their_first_visit_and_judged_on_what_followed(
    results: dict[str, Any],
) -> None:
    # k0..k3 came back and bought; k6's second basket, a minute after the first, is a visit of
    # its own; k5 came back only to look; k4 never came back, so there is nothing to judge.
    assert users_by_group(results, "conversion")["cold"] == 5  # k0..k3, k6
    assert users_by_group(results, "all")["cold"] == 6  # and k5
    # Item-kNN has nothing to say to a stranger without a visit: any hit comes from the first
    # visit (k6's basket of sku12 and sku13 leads to sku14, bought with both by c4, c14, ...).
    cold = results["global"]["targets"]["conversion"]["groups"]["cold"]["results"]
    assert cold["item_knn"]["20"]["hit_rate"] > 0
    # Nothing was bought before the cut by someone first seen after it.
    assert "cold" not in users_by_group(results, "conversion_new")
    assert "cold" not in users_by_group(results, "conversion_repeat")


# --- the session protocol ------------------------------------------------------------------


def test_the_session_protocol_replays_every_held_out_visit_item_by_item(
    results: dict[str, Any],
) -> None:
    session = results["session"]

    assert session["sessions"] == HELD_OUT_VISITS == 102
    assert session["predictions"] == NEXT_ITEM_PREDICTIONS == 296
    assert session["k"] == 20
    assert session["label"] == "next item in a visit (a visit ends with one basket or invoice)"
    for name, values in session["results"].items():
        assert 0 <= values["mrr"] <= values["hit_rate"] <= 1, name


def test_the_session_protocol_samples_at_most_the_configured_predictions(tmp_path: Path) -> None:
    config = a_shop(tmp_path, max_session_predictions=40)

    session = evaluate([config], holdout_days=10, progress=False)["session"]

    assert session["predictions"] == 40


# --- the verdict ---------------------------------------------------------------------------


def test_the_verdict_names_the_best_baseline_and_follows_its_numbers(
    results: dict[str, Any],
) -> None:
    verdict = results["verdict"]
    ndcg = {name: by_k["20"]["ndcg"] for name, by_k in table(results).items()}
    best = max(BASELINES, key=lambda name: ndcg[name])

    assert verdict["target"] == "conversion" and verdict["metric"] == "ndcg@20"
    assert verdict["best_baseline"] == best
    assert verdict["engine"] == pytest.approx(ndcg["engine"])
    assert verdict["baseline_value"] == pytest.approx(ndcg[best])
    assert verdict["margin"] == pytest.approx(ndcg["engine"] / ndcg[best] - 1)
    assert verdict["required"] == 0.05
    # The shop's log has views too: every next event is judged as a second target.
    [also] = verdict["also"]
    every = {name: by_k["20"]["ndcg"] for name, by_k in table(results, "all").items()}
    best_all = max(BASELINES, key=lambda name: every[name])
    assert also["target"] == "all" and also["best_baseline"] == best_all
    assert also["margin"] == pytest.approx(every["engine"] / every[best_all] - 1)
    met = [verdict["margin"] >= 0.05, also["margin"] >= 0.05]
    assert verdict["passed"] is all(met)

    def part(target: str, engine: float, margin: float, name: str, value: float) -> str:
        relation = "over" if margin >= 0.05 else "against"
        return (
            f"the engine's ndcg@20 on {target} targets of known users is {engine:.4f}, "
            f"{margin:+.1%} {relation} the best baseline ({name}, {value:.4f}); 5% required"
            + ("" if margin >= 0.05 else " (not met)")
        )

    word = "PASSED" if verdict["passed"] else "NOT MET"
    assert verdict["message"] == f"{word}: " + "; ".join(
        [
            part("conversion", ndcg["engine"], verdict["margin"], best, ndcg[best]),
            part("all", every["engine"], also["margin"], best_all, every[best_all]),
        ]
    )
    summary = format_summary(results)
    assert summary.splitlines()[-1] == f"  {verdict['message']}"
    assert "65 known users, k=20" in summary.splitlines()[0]


def test_on_a_shop_of_staples_buy_again_is_the_baseline_to_beat(results: dict[str, Any]) -> None:
    # Every known customer rebuys exactly what they bought before: their own purchases are the
    # answer, and the engine, which ranks them first too, cannot beat "buy again" by 5%.
    verdict = results["verdict"]

    assert verdict["best_baseline"] == "buy_again"
    assert table(results, "conversion_repeat")["buy_again"]["20"]["recall"] == 1.0
    assert verdict["passed"] is False
    assert verdict["message"].startswith("NOT MET: ")


def test_library_baselines_never_serve_a_customer_what_they_already_have(
    results: dict[str, Any],
) -> None:
    # implicit's ALS and item-kNN leave out the items already in a customer's row (the library's
    # default, and the baselines' docstring), so on repurchase targets, items bought before the
    # cut, they cannot hit. At k=10 they do not; at k=20 they hit for about a third of the
    # customers: a regular has 13 items of the shop's 30, fewer than 20 others score, and the
    # library pads the list with the customer's own items.
    repeat = table(results, "conversion_repeat")
    for name in ("implicit_als", "item_knn"):
        assert repeat[name]["10"]["hit_rate"] == 0.0, name
        assert repeat[name]["20"]["hit_rate"] == 0.0, name


# --- A/B -----------------------------------------------------------------------------------


def test_a_second_configuration_is_compared_with_bootstrap_intervals(tmp_path: Path) -> None:
    write_shop(tmp_path)
    main_config = load_config(write_config(tmp_path, max_session_predictions=20))
    other = load_config(
        write_config(tmp_path, "b", max_session_predictions=20, blend="bought_before = 0.0")
    )

    results = evaluate([main_config, other], holdout_days=10, progress=False)

    assert results["strategies"]["engine:b"] == {
        "kind": "engine",
        "label": "engine (b.toml)",
    }
    assert list(results["strategies"])[:2] == ["engine", "engine:b"]
    assert "engine:b" in table(results) and "engine:b" in results["session"]["results"]
    comparisons = results["comparisons"]
    # The engine's gain over each baseline on both judged targets (the log has views besides
    # conversions), and engine:b's over the engine on each target.
    assert [(c["a"], c["b"], c["target"]) for c in comparisons] == [
        *((name, "engine", "conversion") for name in BASELINES),
        *((name, "engine", "all") for name in BASELINES),
        *(
            ("engine", "engine:b", t)
            for t in ["conversion", "all", "conversion_new", "conversion_repeat"]
        ),
    ]
    for c in comparisons:
        assert c["group"] == "known" and c["metric"] == "ndcg@20"
        assert c["low"] <= c["diff"] <= c["high"], c
        assert c["diff"] == pytest.approx(c["b_mean"] - c["a_mean"])
        engine = c["b_mean"] if c["b"] == "engine" else c["a_mean"]
        assert engine == pytest.approx(table(results, c["target"])["engine"]["20"]["ndcg"])
        assert c["level"] == 0.95


def test_configurations_reading_different_logs_are_refused(tmp_path: Path) -> None:
    first = a_shop(tmp_path)
    write_shop(tmp_path / "other")
    other = load_config(write_config(tmp_path, "other", events="other/events.csv"))

    with pytest.raises(ConfigError) as caught:
        evaluate([first, other], holdout_days=10, progress=False)

    assert str(caught.value) == (
        f"{other.source}: reads other events or items than {first.source}; "
        "configurations compared on one split must read the same log"
    )


# --- holdout options -----------------------------------------------------------------------


def test_holding_out_a_share_of_the_time_span(tmp_path: Path) -> None:
    config = a_shop(tmp_path, max_session_predictions=20)
    times = [ts for _user, _item, _kind, ts, _order in shop_rows()]
    cut = NEWEST - int(0.2 * (NEWEST - min(times)))

    results = evaluate([config], holdout_share=0.2, progress=False)

    assert results["split"] == {
        "cut": datetime.fromtimestamp(cut, tz=UTC).isoformat(),
        "holdout": "last 20% of the log's time span",
        "train_events": sum(ts < cut for ts in times),
        "test_events": sum(ts >= cut for ts in times),
    }
    assert users_by_group(results, "all")["known"] > 0


def test_holding_out_everything_says_there_is_nothing_to_train_on(tmp_path: Path) -> None:
    config = a_shop(tmp_path)

    with pytest.raises(NotEnoughHistoryError) as caught:
        evaluate([config], holdout_days=100, progress=False)

    assert str(caught.value) == (
        "every event falls in the last 100 days: nothing to train on before them"
    )


# --- the command line ----------------------------------------------------------------------


def test_recsys_evaluate_writes_the_report_json_and_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_shop(tmp_path)
    config = write_config(tmp_path, max_session_predictions=20)
    out = tmp_path / "report"

    code = main(
        [
            "-q",
            "evaluate",
            "--config",
            str(config),
            "--out",
            str(out),
            "--no-progress",
            "--holdout-days",
            "10",
            "--k",
            "5,10",
        ]
    )

    assert code == EXIT_OK
    assert sorted(p.name for p in out.iterdir()) == [
        "by_group.png",
        "latency_vs_quality.png",
        "metric_vs_k.png",
        "report.md",
        "results.json",
        "session.png",
    ]
    saved = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert saved["ks"] == [5, 10, 20]  # 20, the headline cut-off, is always there
    assert list(table(saved)["engine"]) == ["5", "10", "20"]
    assert saved["title"] == "shop"
    stdout = capsys.readouterr().out
    assert saved["verdict"]["message"] in stdout
    assert f"report: {out / 'report.md'}" in stdout


@pytest.mark.parametrize(
    ("k", "message"),
    [
        ("x", "--k must be comma-separated whole numbers (got 'x')"),
        ("10,", "--k must be comma-separated whole numbers (got '10,')"),
        ("0,10", "evaluation.ks must be positive cut-offs (got [0, 10])"),
    ],
)
def test_recsys_evaluate_refuses_a_bad_k_with_the_bad_input_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], k: str, message: str
) -> None:
    write_shop(tmp_path)
    config = write_config(tmp_path)

    out = tmp_path / "report"

    code = main(
        ["-q", "evaluate", "--config", str(config), "--out", str(out), "--no-progress", "--k", k]
    )

    assert code == EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip() == f"recsys: error: ConfigError: {message}"
    assert not out.exists()


def test_without_baselines_the_verdict_says_so_instead_of_passing(tmp_path: Path) -> None:
    import dataclasses

    config = a_shop(tmp_path, max_session_predictions=20)
    config = dataclasses.replace(
        config, evaluation=dataclasses.replace(config.evaluation, baselines=())
    )
    results = evaluate([config], holdout_days=10, progress=False, sessions=False)
    assert results["verdict"]["passed"] is False
    assert "no baseline was run" in results["verdict"]["message"]


def test_a_gain_whose_interval_does_not_clear_the_bar_is_not_shown_not_passed() -> None:
    import numpy as np

    from recsys.config import EvaluationConfig
    from training.evaluation.evaluate import _verdict

    rng = np.random.default_rng(0)
    kinds = {"engine": "engine", "popular": "baseline"}
    few = {"conversion": {"engine": rng.random(12), "popular": rng.random(12) * 0.8}}
    verdict = _verdict(few, "conversion", kinds, EvaluationConfig(), "ndcg@20")
    assert verdict["margin"] > 0.05 and not verdict["passed"]
    assert verdict["message"].startswith("NOT SHOWN: ")
    assert "does not clear the 5% bar" in verdict["message"]
    many = {"conversion": {"engine": np.full(500, 0.3) + rng.random(500) * 0.01,
                           "popular": np.full(500, 0.2)}}  # fmt: skip
    verdict = _verdict(many, "conversion", kinds, EvaluationConfig(), "ndcg@20")
    assert verdict["passed"] and verdict["message"].startswith("PASSED: ")
    assert "clears it" in verdict["message"]
