"""The `recsys` command: a shop engineer runs it on the bundled sample and on their own config."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from training.cli import EXIT_BAD_INPUT, EXIT_OK, main


def test_check_on_the_bundled_sample_prints_the_load_report_and_matrix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "-q",
            "check",
            "--config",
            str(ROOT / "data/configs/sample.toml"),
            "--rejects",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "events: 22,010 rows read from 1 file(s)" in out
    assert "missing_user" in out
    assert "matrix: 300 users x" in out
    assert (tmp_path / "events.rejects.csv").exists()


def test_bad_config_exits_with_the_bad_input_code_and_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "shop.toml"
    bad.write_text("[events]\npath = 'x.csv'\n", encoding="utf-8")
    code = main(["check", "--config", str(bad)])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert (
        err.strip() == f"recsys: error: ConfigError: {bad}: missing required key 'events.columns'"
    )


def test_strict_run_on_dirty_sample_refuses_with_the_first_bad_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "-q",
            "check",
            "--config",
            str(ROOT / "data/configs/sample.toml"),
            "--on-error",
            "strict",
            "--rejects",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert "online_retail_sample.csv.gz: column 'CustomerID' has 638 empty user ids" in err


def test_recommend_prints_lists_for_a_customer_a_session_and_a_product_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.serving_shop import build_shop_model

    root = build_shop_model(tmp_path)
    assert main(["-q", "recommend", "--models", str(root), "--user", "5", "--n", "3"]) == EXIT_OK
    assert main(["-q", "recommend", "--models", str(root), "--session", "sku3,zzz"]) == EXIT_OK
    assert main(["-q", "recommend", "--models", str(root), "--item", "sku3", "--n", "2"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "for user 5 (model 000001):" in out
    assert "because you viewed sku3 just now" in out
    assert "ignored unknown session items: ['zzz']" in out
    assert "similar to item sku3:" in out and "bought with item sku3:" in out


def test_recommend_without_a_model_says_to_train_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["recommend", "--models", str(tmp_path / "none")]) == EXIT_BAD_INPUT
    assert "no such model directory; run `recsys train` first" in capsys.readouterr().err
