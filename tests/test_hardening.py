"""Hostile input and broken settings: refused with a message naming the key, file, row and column;
nothing published that serving cannot answer from."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from recsys.config import config_from_dict, load_config
from recsys.errors import ConfigError, EventsSchemaError, ModelDirError, SchemaError
from recsys.ingest import load_events
from recsys.modeldir import current_version
from recsys.served import ServedModel
from tests.conftest import make_config
from tests.serving_shop import shop_config, write_shop
from training.job import train


@pytest.mark.parametrize(
    ("section", "text", "key"),
    [
        ("blend", "personal = nan", "blend.personal"),
        ("blend", "personal = inf", "blend.personal"),
        ("matrix", "half_life_days = inf", "matrix.half_life_days"),
        ("matrix", "weights = { view = nan }", "matrix.weights.view"),
        ("validation", "max_future_days = inf", "validation.max_future_days"),
        ("training", "holdout_days = nan", "training.holdout_days"),
        ("models.als", "regularization = nan", "models.als.regularization"),
        ("models.als", "alpha = -inf", "models.als.alpha"),
        ("ranker", "learning_rate = inf", "ranker.learning_rate"),
    ],
)
def test_a_setting_that_is_not_a_finite_number_is_refused_by_name(
    tmp_path: Path, section: str, text: str, key: str
) -> None:
    path = tmp_path / "shop.toml"
    path.write_text(
        f'[events]\npath = "events.csv"\n[events.columns]\nuser = "u"\nitem = "i"\n'
        f'timestamp = "t"\n[{section}]\n{text}\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match=re.escape(f"{key} must be a finite number")):
        load_config(path)


def test_an_experiment_weight_that_is_not_finite_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="finite number"):
        config_from_dict(
            {
                "events": {
                    "path": "e.csv",
                    "columns": {"user": "u", "item": "i", "timestamp": "t"},
                },
                "experiments": [
                    {
                        "name": "x",
                        "salt": "x",
                        "variants": [
                            {"name": "a", "share": 0.5},
                            {"name": "b", "share": 0.5, "blend": {"personal": float("nan")}},
                        ],
                    }
                ],
            },
            base_dir=tmp_path,
        )


def test_a_version_serving_cannot_answer_from_is_never_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_shop(tmp_path)
    config = shop_config(tmp_path)
    first = train(config, force=True)
    assert current_version(config.output.models) == first.version

    def broken(cls: type, path: object) -> ServedModel:
        raise ValueError("blend.personal must be a number (got NoneType None)")

    monkeypatch.setattr(ServedModel, "load", classmethod(broken))
    with pytest.raises(ModelDirError, match=r"cannot be served.*CURRENT still names"):
        train(config, force=True)
    assert current_version(config.output.models) == first.version


AMOUNTS = """user,item,ts,qty,price
1,a,1700000000,1,2.5
1,b,1700000100,inf,2.5
2,a,1700000200,1e40,2.5
2,b,1700000300,1,1e400
3,a,1700000400,1,-inf
3,b,1700000500,0,2.5
4,a,1700000600,2,3.0
"""


def _amounts_config(tmp_path: Path, on_error: str) -> object:
    (tmp_path / "events.csv").write_text(AMOUNTS, encoding="utf-8")
    return make_config(
        tmp_path,
        {
            "path": "events.csv",
            "timestamp_unit": "s",
            "default_event": "purchase",
            "columns": {
                "user": "user",
                "item": "item",
                "timestamp": "ts",
                "quantity": "qty",
                "price": "price",
            },
        },
        validation={"on_error": on_error},
    )


def test_infinite_huge_and_zero_amounts_are_set_aside_with_their_reasons(tmp_path: Path) -> None:
    config = _amounts_config(tmp_path, "quarantine")
    log = load_events(config)  # type: ignore[arg-type]
    report = log.report
    assert report.rows_read == 7
    assert report.accepted == 2
    assert report.rows_read == report.accepted + sum(report.rejected.values())
    assert report.rejected == {
        "implausible_quantity": 2,  # inf, 1e40
        "implausible_price": 1,  # 1e400
        "negative_price": 1,  # -inf: negative first
        "zero_quantity": 1,
    }
    frame = log.frame
    assert frame["quantity"].max() <= 2 and frame["price"].abs().max() <= 3


def test_a_strict_load_names_the_file_column_and_first_row_of_an_implausible_amount(
    tmp_path: Path,
) -> None:
    config = _amounts_config(tmp_path, "strict")
    (tmp_path / "events.csv").write_text(
        "user,item,ts,qty,price\n1,a,1700000000,1,2\n1,b,1700000100,1e40,2\n2,a,1700000200,inf,2\n",
        encoding="utf-8",
    )
    pattern = r"events.csv: column 'qty' has 2 quantities that are infinite or above 1e\+09 "
    with pytest.raises(EventsSchemaError, match=pattern + r"\(first at row 2: '1e\+40'\)"):
        load_events(config)  # type: ignore[arg-type]


def test_rows_in_equal_rows_accepted_plus_rejected_for_any_amount(tmp_path: Path) -> None:
    hypothesis = pytest.importorskip("hypothesis")
    strategies = pytest.importorskip("hypothesis.strategies")

    amounts = strategies.one_of(
        strategies.floats(allow_nan=True, allow_infinity=True),
        strategies.integers(-(10**12), 10**12),
        strategies.sampled_from(["", "x", "1e400", "-0", "NaN"]),
    )

    @hypothesis.settings(max_examples=40, deadline=None, database=None)
    @hypothesis.given(strategies.lists(strategies.tuples(amounts, amounts), min_size=1,
                                       max_size=8))  # fmt: skip
    def check(rows: list[tuple[object, object]]) -> None:
        lines = ["user,item,ts,qty,price"] + [
            f"{i},{i % 3},{1700000000 + i},{q},{p}" for i, (q, p) in enumerate(rows)
        ]
        folder = tmp_path / f"case{abs(hash(tuple(map(str, rows))))}"
        folder.mkdir(exist_ok=True)
        (folder / "events.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        config = make_config(
            folder,
            {"path": "events.csv", "timestamp_unit": "s", "default_event": "purchase",
             "columns": {"user": "user", "item": "item", "timestamp": "ts", "quantity": "qty",
                         "price": "price"}},
            validation={"on_error": "quarantine", "duplicates": "keep"},
        )  # fmt: skip
        try:
            log = load_events(config)
        except EventsSchemaError:
            return  # nothing accepted at all: said so, with the reasons
        report = log.report
        assert report.rows_read == len(rows)
        assert report.rows_read == report.accepted + sum(report.rejected.values())
        frame = log.frame
        finite = pd.concat([frame["quantity"], frame["price"].dropna()])
        assert finite.abs().max() <= 1e9 if len(finite) else True

    check()


def _ids_log(folder: Path, junk: bool) -> Path:
    rows = ["customer,sku,ts"]
    for day in range(30):
        for user in (17850, 13047, 12583):
            rows.append(f"{user},{(user + day) % 7},{1700000000 + day * 86400 + user % 100}")
    rows.append(f"17850.0,3,{1700000000 + 31 * 86400}")  # a spreadsheet's float id: the same user
    if junk:
        rows.append(f"abc,3,{1700000000 + 31 * 86400 + 60}")
    path = folder / "events.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _ids_config(folder: Path, **events: object) -> object:
    return make_config(
        folder,
        {
            "path": "events.csv",
            "timestamp_unit": "s",
            "columns": {"user": "customer", "item": "sku", "timestamp": "ts"},
            **events,
        },
        validation={"on_error": "quarantine"},
        models={"als": {"factors": 4, "iterations": 2}},
        ranker={"enabled": False},
    )


def test_one_junk_id_after_a_published_model_is_a_rejected_row_not_text_ids(tmp_path: Path) -> None:
    from serving import Recommender

    _ids_log(tmp_path, junk=False)
    config = _ids_config(tmp_path)
    train(config, force=True)  # type: ignore[arg-type]
    _ids_log(tmp_path, junk=True)
    result = train(config, force=True)  # type: ignore[arg-type]
    assert result.dataset is not None
    report = result.dataset.events.report
    assert report.rejected.get("bad_user_id") == 1
    rec = Recommender.load(config.output.models)  # type: ignore[attr-defined]
    assert rec.model.users.dtype == "int64"
    assert rec.recommend(17850, n=3).user_known
    assert len(rec.model.users) == 3  # 17850 and 17850.0 are one customer


def test_an_int_id_type_rejects_what_is_not_a_whole_number_by_name(tmp_path: Path) -> None:
    _ids_log(tmp_path, junk=True)
    config = _ids_config(tmp_path, user_id_type="int")
    log = load_events(config)  # type: ignore[arg-type]
    assert log.report.rejected == {"bad_user_id": 1}
    strict = make_config(
        tmp_path,
        {"path": "events.csv", "timestamp_unit": "s", "user_id_type": "int",
         "columns": {"user": "customer", "item": "sku", "timestamp": "ts"}},
        validation={"on_error": "strict"},
    )  # fmt: skip
    with pytest.raises(EventsSchemaError, match=r"column 'customer' has 1 user ids that are not "):
        load_events(strict)


def test_a_text_id_type_keeps_every_id_as_text(tmp_path: Path) -> None:
    _ids_log(tmp_path, junk=False)
    log = load_events(_ids_config(tmp_path, user_id_type="text"))  # type: ignore[arg-type]
    assert set(log.frame["user"].unique()) == {"17850", "13047", "12583"}


def test_a_timestamp_format_decides_how_a_csv_reads_not_the_readers_guess(tmp_path: Path) -> None:
    (tmp_path / "events.csv").write_text(
        "u,i,t\n1,a,2011-05-01\n2,b,2011-06-01\n", encoding="utf-8"
    )
    config = make_config(
        tmp_path,
        {"path": "events.csv", "timestamp_unit": "datetime", "timestamp_format": "%Y-%d-%m",
         "columns": {"user": "u", "item": "i", "timestamp": "t"}},
    )  # fmt: skip
    log = load_events(config)
    days = pd.to_datetime(log.frame["timestamp"], unit="s").dt.strftime("%Y-%m-%d").tolist()
    assert days == ["2011-01-05", "2011-01-06"]  # day 5 and 6 of January, as the format says


@pytest.mark.parametrize("fmt", ["%Q", "day-month-year"])
def test_an_invalid_timestamp_format_is_a_config_error_naming_it(tmp_path: Path, fmt: str) -> None:
    with pytest.raises(ConfigError, match=r"events.timestamp_format .* is not a time format"):
        make_config(
            tmp_path,
            {"path": "events.csv", "timestamp_format": fmt,
             "columns": {"user": "u", "item": "i", "timestamp": "t"}},
        )  # fmt: skip


def _cli_shop(tmp_path: Path, extra: str) -> Path:
    (tmp_path / "events.csv").write_text(
        "u,i,t\n" + "".join(f"{u},{i},{1700000000 + 3600 * (u * 7 + i)}\n"
                            for u in range(20) for i in range(6)),
        encoding="utf-8",
    )  # fmt: skip
    path = tmp_path / "shop.toml"
    path.write_text(
        'seed = 1\n[events]\npath = "events.csv"\n[events.columns]\nuser = "u"\nitem = "i"\n'
        f'timestamp = "t"\n{extra}\n',
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[models.als]\nfactors = 1000000000", "models.als.factors must be <= 4096"),
        ('[output]\nmodels = "bad\\u0000name"', "NUL byte"),
        ("[ranker]\nlearning_rate = nan", "ranker.learning_rate must be a finite number"),
    ],
)
def test_a_bad_setting_exits_2_with_a_message_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, message: str
) -> None:
    from training.cli import EXIT_BAD_INPUT, main

    code = main(["-q", "train", "--config", str(_cli_shop(tmp_path, extra))])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert message in err and "Traceback" not in err


def test_an_empty_event_path_or_a_negative_seed_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.cli import EXIT_BAD_INPUT, main

    shop = _cli_shop(tmp_path, "")
    shop.write_text(shop.read_text().replace('path = "events.csv"', "path = []"))
    assert main(["-q", "check", "--config", str(shop)]) == EXIT_BAD_INPUT
    assert "events.path must name at least one file" in capsys.readouterr().err
    shop = _cli_shop(tmp_path, "")
    shop.write_text(shop.read_text().replace("seed = 1", "seed = -1"))
    assert main(["-q", "check", "--config", str(shop)]) == EXIT_BAD_INPUT
    assert "seed must be a whole number" in capsys.readouterr().err


def test_a_models_folder_that_is_a_file_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.cli import EXIT_BAD_INPUT, main

    (tmp_path / "models").write_text("not a folder", encoding="utf-8")
    shop = _cli_shop(tmp_path, '[output]\nmodels = "models"')
    code = main(["-q", "train", "--config", str(shop), "--force"])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT, err
    assert "models" in err and "Traceback" not in err


def _rewrite(version: Path, file_name: str, arrays: dict[str, object]) -> None:
    """Replace a version's file and give the manifest its matching size and checksum."""
    import hashlib
    import json

    import numpy as np

    path = version / file_name
    np.savez(path, **arrays)  # type: ignore[arg-type]
    manifest_path = version / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    data = path.read_bytes()
    manifest["files"][file_name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    manifest_path.write_text(json.dumps(manifest))


@pytest.fixture
def published(tmp_path: Path) -> Path:
    write_shop(tmp_path)
    config = shop_config(tmp_path)
    result = train(config, force=True)
    assert result.path is not None
    return result.path


def _arrays(version: Path, name: str) -> dict[str, object]:
    import numpy as np

    with np.load(version / f"{name}.npz") as found:
        return {key: found[key] for key in found.files}


def test_text_arrays_with_matching_checksums_are_refused_at_load(published: Path) -> None:
    import numpy as np

    history = _arrays(published, "history")
    history["items"] = np.asarray(history["items"]).astype(str)
    _rewrite(published, "history.npz", history)
    with pytest.raises(ModelDirError, match=r"history.npz: array 'items' holds <U\d+ values"):
        ServedModel.load(published)


def test_a_row_pointer_past_its_entries_is_refused_at_load(published: Path) -> None:
    import numpy as np

    history = _arrays(published, "history")
    indptr = np.asarray(history["indptr"]).copy()
    indptr[-1] += 5
    history["indptr"] = indptr
    _rewrite(published, "history.npz", history)
    with pytest.raises(ModelDirError, match="'indptr' is not a valid row pointer"):
        ServedModel.load(published)


def test_indices_past_the_catalogue_are_refused_at_load_not_on_a_page(published: Path) -> None:
    import numpy as np

    popularity = _arrays(published, "popularity")
    key = next(k for k, v in popularity.items() if np.asarray(v).dtype.kind in "iu")
    popularity[key] = np.asarray(popularity[key]) + 10**6
    _rewrite(published, "popularity.npz", popularity)
    with pytest.raises(ModelDirError, match="cannot be served"):
        ServedModel.load(published)


def test_a_missing_array_is_a_model_dir_error(published: Path) -> None:
    history = _arrays(published, "history")
    del history["events"]
    _rewrite(published, "history.npz", history)
    with pytest.raises(ModelDirError):
        ServedModel.load(published)


def test_a_symbolic_link_inside_a_version_is_refused(published: Path) -> None:
    target = published.parent / "elsewhere.npz"
    (published / "history.npz").rename(target)
    (published / "history.npz").symlink_to(target)
    with pytest.raises(ModelDirError, match="symbolic link"):
        ServedModel.load(published)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"session_items": "sku1"}, "session_items must be a list of ids, not one string"),
        ({"exclude": "sku1"}, "exclude must be a list of ids"),
        ({"categories": "c1"}, "categories must be a list of ids"),
        ({"max_per_category": -1}, "max_per_category must be a whole number >= 0"),
        ({"now": 10**30}, "now must be Unix seconds between"),
        ({"now": "abc"}, "now must be Unix seconds"),
        ({"exclude": 5}, "exclude must be a list of ids"),
    ],
)
def test_recommend_refuses_arguments_it_would_misread_with_a_clear_error(
    shop_models: Path, kwargs: dict[str, object], message: str
) -> None:
    from serving import Recommender

    rec = Recommender.load(shop_models)
    with pytest.raises(ValueError, match=re.escape(message)):
        rec.recommend(7, 5, **kwargs)  # type: ignore[arg-type]


def test_recommend_takes_no_exclusions_as_none(shop_models: Path) -> None:
    from serving import Recommender

    rec = Recommender.load(shop_models)
    assert len(rec.recommend(7, 5, exclude=None)) == 5  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "abc"], "whole numbers"),
        (["--user", "13047.0"], "whole numbers"),
        (["--user", ""], "whole numbers"),
        (["--user", "7", "--n", "0"], "n must be between 1 and"),
        (["--user", "7", "--n", "100000"], "n must be between 1 and"),
    ],
)
def test_recsys_recommend_input_errors_are_one_line_and_exit_2(
    shop_models: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    from training.cli import EXIT_BAD_INPUT, main

    code = main(["-q", "recommend", "--models", str(shop_models), *args])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_recsys_recommend_says_when_the_user_is_not_in_the_model(
    shop_models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.cli import EXIT_OK, main

    assert main(["-q", "recommend", "--models", str(shop_models), "--user", "424242"]) == EXIT_OK
    assert "not in the model" in capsys.readouterr().out


@pytest.mark.slow
def test_loading_a_model_and_exiting_50_times_ends_0_every_time(shop_models: Path) -> None:
    """An Arrow worker thread that freed a model table's bytes while the interpreter ended used
    to abort the process (exit 134), about once in 100 loads on a busy machine."""
    import subprocess
    import sys

    script = (
        "from serving import Recommender; "
        f"r = Recommender.load({str(shop_models)!r}); r.recommend(None, 5)"
    )
    codes = [
        subprocess.run([sys.executable, "-c", script], capture_output=True).returncode
        for _ in range(50)
    ]
    assert codes == [0] * 50


def test_a_run_with_no_rejects_leaves_no_older_rejects_file(tmp_path: Path) -> None:
    _ids_log(tmp_path, junk=True)
    config = _ids_config(tmp_path, user_id_type="int")
    log = load_events(config)  # type: ignore[arg-type]
    assert log.report.rejects_path is not None
    rejects = Path(log.report.rejects_path)
    assert rejects.exists()
    _ids_log(tmp_path, junk=False)
    assert load_events(config).report.rejects_path is None  # type: ignore[arg-type]
    assert not rejects.exists()


def test_a_full_disk_while_writing_rejects_leaves_no_tmp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def full(self: pd.DataFrame, path: object, **_: object) -> None:
        Path(str(path)).write_text("reason,file,row\nhalf")
        raise OSError(errno.ENOSPC, "No space left on device")

    _ids_log(tmp_path, junk=True)
    config = _ids_config(tmp_path, user_id_type="int")
    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    with pytest.raises(OSError, match="No space left"):
        load_events(config)  # type: ignore[arg-type]
    assert list((tmp_path / "rejects").glob("*.tmp")) == []


def test_an_export_removes_what_a_killed_export_left_but_not_a_running_ones(
    shop_models: Path, tmp_path: Path
) -> None:
    import os

    from serving.export import export

    dead = tmp_path / ".recs.parquet.tmp-999999999"
    running = tmp_path / f".recs.parquet.tmp-{os.getppid()}"
    dead.write_bytes(b"x" * 1000)
    running.write_bytes(b"y")
    export(shop_models, tmp_path / "recs.parquet", 5, progress=False, workers=1)
    assert not dead.exists()
    assert running.exists()
    assert (tmp_path / "recs.parquet").exists()


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("u;i;t\n1;2;3", "looks separated by semicolons"),
        ("u\ti\tt\n1\t2\t3", "looks separated by tabs"),
        ("u,i,t,u\n1,2,3,4", "column 'u' appears twice"),
    ],
)
def test_a_header_that_would_be_misread_is_refused_with_a_hint(
    tmp_path: Path, header: str, message: str
) -> None:
    (tmp_path / "events.csv").write_text(f"{header}\n", encoding="utf-8")
    config = make_config(
        tmp_path,
        {"path": "events.csv", "timestamp_unit": "s",
         "columns": {"user": "u", "item": "i", "timestamp": "t"}},
    )  # fmt: skip
    with pytest.raises(SchemaError, match=re.escape(message)):
        load_events(config)


def test_two_inputs_of_the_same_name_are_both_in_the_report(tmp_path: Path) -> None:
    for folder, user in (("a", 1), ("b", 2)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "events.csv").write_text(
            f"u,i,t\n{user},x,1700000000\n{user},y,1700000100\n", encoding="utf-8"
        )
    config = make_config(
        tmp_path,
        {"path": ["a/events.csv", "b/events.csv"], "timestamp_unit": "s",
         "columns": {"user": "u", "item": "i", "timestamp": "t"}},
    )  # fmt: skip
    report = load_events(config).report
    assert sum(report.files.values()) == report.rows_read == 4
    assert len(report.files) == 2


def test_one_ragged_csv_row_is_named_by_its_row_number(tmp_path: Path) -> None:
    from recsys.errors import InputFileError

    rows = "".join(f"{u},x,{1700000000 + u}\n" for u in range(1, 2000))
    (tmp_path / "events.csv").write_text(
        "u,i,t\n" + rows + "7,y,1700009999,extra\n", encoding="utf-8"
    )
    config = make_config(
        tmp_path,
        {"path": "events.csv", "timestamp_unit": "s",
         "columns": {"user": "u", "item": "i", "timestamp": "t"}},
    )  # fmt: skip
    with pytest.raises(InputFileError, match=r"row 2,000 of the events file has 4 fields where"):
        load_events(config)


def _parquet_log(tmp_path: Path, users: list[object]) -> object:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(users)
    table = pa.table({"u": users, "i": ["x"] * n, "t": [1700000000 + k for k in range(n)]})
    pq.write_table(table, tmp_path / "events.parquet")
    return make_config(
        tmp_path,
        {"path": "events.parquet", "timestamp_unit": "s",
         "columns": {"user": "u", "item": "i", "timestamp": "t"}},
        validation={"on_error": "quarantine"},
    )  # fmt: skip


def test_binary_ids_that_are_not_utf8_are_rejected_rows_not_a_crash(tmp_path: Path) -> None:
    config = _parquet_log(tmp_path, [b"alice", b"bob", b"\xff\xfe"])
    report = load_events(config).report  # type: ignore[arg-type]
    assert report.accepted == 2
    assert report.rejected == {"bad_user_id": 1}


@pytest.mark.parametrize(
    ("users", "kind"), [([True, False, True], "true/false"), ([[1], [2, 3], [4]], "list")]
)
def test_ids_that_are_true_false_or_lists_are_refused_by_column(
    tmp_path: Path, users: list[object], kind: str
) -> None:
    config = _parquet_log(tmp_path, users)
    with pytest.raises(SchemaError, match=rf"column 'u' holds {kind}"):
        load_events(config)  # type: ignore[arg-type]


def test_missing_ids_in_a_parquet_with_stale_pandas_metadata_are_missing_not_nan(
    tmp_path: Path,
) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    # pandas metadata left from an older frame, in which "u" held floats
    old = pa.Table.from_pandas(pd.DataFrame({"u": [1.0, float("nan")], "i": ["a", "b"]}))
    table = pa.table({"u": pa.array(["7", None, "8"]), "i": ["a", "b", "c"],
                      "t": [1700000000, 1700000001, 1700000002]})  # fmt: skip
    metadata = json.loads(old.schema.metadata[b"pandas"])
    pq.write_table(table.replace_schema_metadata({b"pandas": json.dumps(metadata).encode()}),
                   tmp_path / "events.parquet")  # fmt: skip
    config = make_config(
        tmp_path,
        {"path": "events.parquet", "timestamp_unit": "s",
         "columns": {"user": "u", "item": "i", "timestamp": "t"}},
        validation={"on_error": "quarantine"},
    )  # fmt: skip
    log = load_events(config)
    assert log.report.rejected == {"missing_user": 1}
    assert sorted(log.frame["user"].astype(str)) == ["7", "8"]
