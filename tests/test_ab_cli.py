"""`recsys ab-report`: a shop runs an experiment for a while, then reads who won."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recsys.config import load_config
from serving import Recommender
from serving.exposures import JsonlExposureLog
from tests.serving_shop import DAY, END_DAY, T0, build_shop_model
from training.cli import EXIT_BAD_INPUT, EXIT_OK, main

NOW = T0 + END_DAY * DAY
EXPERIMENT = {
    "name": "popular-first",
    "salt": "s1",
    "variants": [{"name": "control", "share": 0.5}, {"name": "B", "share": 0.5, "n": 3}],
}


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Serve every customer once with exposures logged, then log what they bought next."""
    folder = tmp_path_factory.mktemp("ab-cli")
    models = build_shop_model(folder, experiments=[EXPERIMENT])
    with JsonlExposureLog(folder / "exposures" / "exposures.jsonl") as log:
        rec = Recommender.load(models, exposures=log)
        shown = {user: rec.recommend(user, 5, now=NOW) for user in range(60)}
    # After the exposure, every third customer buys the first item they were shown.
    events = pd.read_csv(folder / "events.csv")
    later = [
        (user, result.item_ids[0], "buy", NOW + 3600, f"after{user}")
        for user, result in shown.items()
        if user % 3 == 0 and len(result)
    ]
    extra = pd.DataFrame(later, columns=events.columns)
    pd.concat([events, extra]).to_csv(folder / "events.csv", index=False)
    (folder / "shop.toml").write_text(SHOP_TOML, encoding="utf-8")
    return folder


# The shop's config as a file: its log format and the experiment (what ab-report reads).
SHOP_TOML = """
seed = 3

[events]
path = "events.csv"
timestamp_unit = "s"
event_types = { buy = "purchase", view = "view" }
columns = { user = "customer", item = "sku", event = "type", timestamp = "ts", session = "order" }

[[experiments]]
name = "popular-first"
salt = "s1"

[[experiments.variants]]
name = "control"
share = 0.5

[[experiments.variants]]
name = "B"
share = 0.5
n = 3

[output]
models = "models"
rejects = "rejects"
"""


def test_the_report_compares_the_variants_and_writes_its_files(
    ran: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "-q",
            "ab-report",
            "--config",
            str(ran / "shop.toml"),
            "--experiment",
            "popular-first",
            "--exposures",
            str(ran / "exposures"),
            "--window",
            "2d",
            "--out",
            str(ran / "report"),
        ]
    )
    assert code == EXIT_OK
    printed = capsys.readouterr().out
    assert "popular-first" in printed and "control" in printed
    assert (ran / "report" / "report.md").exists() and (ran / "report" / "results.json").exists()


def test_an_unknown_experiment_is_a_clear_error(
    ran: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "ab-report",
            "--config",
            str(ran / "shop.toml"),
            "--experiment",
            "nope",
            "--exposures",
            str(ran / "exposures"),
        ]
    )
    assert code == EXIT_BAD_INPUT
    assert "nope" in capsys.readouterr().err


def test_a_bad_window_is_refused(ran: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["ab-report", "--config", str(ran / "shop.toml"), "--experiment", "popular-first"]
    code = main([*args, "--exposures", str(ran / "exposures"), "--window", "soon"])
    assert code == EXIT_BAD_INPUT
    assert "--window must look like 7d, 36h or 7" in capsys.readouterr().err
    assert load_config(ran / "shop.toml").experiments[0].name == "popular-first"
