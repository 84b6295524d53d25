"""`recsys tune`: a shop engineer chooses blend weights without looking at the held-out days."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pandas as pd
import pytest

from recsys.config import load_config
from tests.test_evaluation import CUT, write_config, write_shop
from training.cli import EXIT_OK, main
from training.evaluation import tune as tune_module
from training.evaluation.tune import tune


@pytest.fixture
def small_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    # The hand-built shop has ~65 customers; let it tune as a big shop would.
    monkeypatch.setattr(tune_module, "MIN_SAMPLE", 10)


def test_tuning_never_reads_the_held_out_days(tmp_path: Path, small_samples: None) -> None:
    whole = tmp_path / "whole"
    events = write_shop(whole)
    # The same shop with the held-out days cut off, and its log ending exactly where the
    # whole log's does (a final event on the last day keeps the cut in the same place).
    cut_off = tmp_path / "cut"
    cut_off.mkdir()
    frame = pd.read_csv(events)
    last = frame.loc[[frame["ts"].idxmax()]]
    kept = pd.concat([frame.loc[frame["ts"] < CUT], last])
    kept.to_csv(cut_off / "events.csv", index=False)

    a = tune(load_config(write_config(whole)), holdout_days=10, progress=False)
    b = tune(load_config(write_config(cut_off)), holdout_days=10, progress=False)

    assert a.period.startswith("validation: the 10 days before the last 10 days")
    assert a.blend == b.blend
    assert a.scores == b.scores


def test_weights_move_only_when_they_score_better(tmp_path: Path, small_samples: None) -> None:
    write_shop(tmp_path)
    result = tune(load_config(write_config(tmp_path)), holdout_days=10, progress=False)

    for before, after in result.scores.values():
        assert after >= before
    assert result.trials and all("score" in trial for trial in result.trials)
    for name, (before, after) in result.changed().items():
        assert getattr(result.start, name) == before and getattr(result.blend, name) == after


def test_too_few_validation_users_keep_the_configured_weights(tmp_path: Path) -> None:
    write_shop(tmp_path)
    config = load_config(write_config(tmp_path))

    result = tune(config, holdout_days=10, progress=False)

    assert "known users' weights kept: only" in result.format()
    for name in tune_module.KNOWN_GRID:
        assert getattr(result.blend, name) == getattr(config.blend, name)


def test_the_printed_section_pastes_into_a_configuration(
    tmp_path: Path, small_samples: None
) -> None:
    write_shop(tmp_path)
    result = tune(load_config(write_config(tmp_path)), holdout_days=10, progress=False)

    # The section's lines pasted under [blend] of the shop's file.
    lines = result.toml().split("[blend]\n", 1)[1]
    pasted = load_config(write_config(tmp_path, name="tuned", blend=lines))

    assert pasted.blend == result.blend
    assert tomllib.loads(result.toml())["blend"]["session_decay"] == result.blend.session_decay


def test_the_command_prints_and_writes_the_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_shop(tmp_path)
    config = write_config(tmp_path)
    out = tmp_path / "blend.toml"

    code = main(
        [
            "-q",
            "tune",
            "--config",
            str(config),
            "--holdout-days",
            "10",
            "--write",
            str(out),
            "--no-progress",
        ]
    )

    assert code == EXIT_OK
    printed = capsys.readouterr().out
    assert "[blend]" in printed and "tuned on validation" in printed
    assert tomllib.loads(out.read_text(encoding="utf-8"))["blend"]
