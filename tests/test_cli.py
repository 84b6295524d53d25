"""The `recsys` command: a shop engineer runs it on the bundled sample and on their own config."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
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


def test_quickstart_trains_the_sample_prints_three_lists_and_exports_saying_each_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh checkout's data/ folder; the models, rejects and export land beside it.
    (tmp_path / "data").mkdir()
    shutil.copytree(ROOT / "data/configs", tmp_path / "data/configs")
    shutil.copy(ROOT / "data/online_retail_sample.csv.gz", tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "quickstart"]) == EXIT_OK
    out = capsys.readouterr().out
    commands = [line for line in out.splitlines() if line.startswith("$ ")]
    assert commands == [
        "$ recsys train --config data/configs/sample.toml",
        "$ recsys recommend --models models --user 13047 --n 5",
        "$ recsys recommend --models models --session 84879,22745 --n 3",
        "$ recsys recommend --models models --item 84879 --n 3",
        "$ recsys export --models models --out recs.parquet --n 10",
    ]
    assert "published version 000001:" in out
    assert "for user 13047 (model 000001):" in out
    assert "for anonymous visitor with session ['84879', '22745'] (model 000001):" in out
    assert "similar to item 84879:" in out and "bought with item 84879:" in out
    assert "exported 300 users" in out
    assert (tmp_path / "models/000001/manifest.json").is_file()
    assert len(pd.read_parquet(tmp_path / "recs.parquet")) == 3_000


def test_quickstart_outside_the_project_root_says_where_to_run_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["quickstart"]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip() == (
        f"recsys: error: data/configs/sample.toml: no such file in {tmp_path}; run "
        "`recsys quickstart` from the project's root (the folder holding data/)"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_export_as_of_a_given_time_is_the_same_file_twice_and_a_bad_time_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from recsys.served import ServedModel
    from serving.export import export
    from tests.serving_shop import build_shop_model

    root = build_shop_model(tmp_path)
    moment = "2024-01-20T12:00:00"  # three days after the shop's log ends
    for name in ("a.parquet", "b.parquet"):
        args = ["-q", "export", "--models", str(root), "--out", str(tmp_path / name)]
        assert main([*args, "--n", "5", "--now", moment, "--no-progress"]) == EXIT_OK
    first, second = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    pd.testing.assert_frame_equal(first, second)
    # The same as the Python API at that moment, in Unix seconds.
    seconds = int(pd.Timestamp(moment, tz="UTC").timestamp())
    assert ServedModel.load(root).data_end < seconds
    export(root, tmp_path / "api.parquet", 5, now=seconds, progress=False)
    pd.testing.assert_frame_equal(first, pd.read_parquet(tmp_path / "api.parquet"))
    with pytest.raises(SystemExit) as stop:
        main(
            ["export", "--models", str(root), "--out", str(tmp_path / "c.parquet"), "--now", "soon"]
        )
    assert stop.value.code == 2
    assert "'soon' is not a time" in capsys.readouterr().err
