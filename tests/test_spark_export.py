"""Batch export on Spark: the same rows as `recsys export`, user for user, cold users too."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

pytest.importorskip("pyspark", reason="the Spark export needs pyspark: pip install '.[spark]'")

from recsys.config import load_config
from recsys.served import ServedModel
from serving.export import ExportError, export
from serving.spark_export import export_spark, spark_session
from tests.conftest import ROOT, shared_file
from training.cli import EXIT_BAD_INPUT, EXIT_OK, main
from training.job import train

pytestmark = pytest.mark.spark
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "configs" / "sample.toml"
NOW = 1_317_484_800  # 2011-10-01: the sample's clock after its last day


@pytest.fixture(scope="module")
def sample_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample, trained as the quick start trains it."""
    out = tmp_path_factory.mktemp("spark-sample")
    config = load_config(SAMPLE)
    config = dataclasses.replace(
        config, output=dataclasses.replace(config.output, rejects=out / "rejects")
    )
    train(config, out=out / "models")
    return out / "models"


@pytest.fixture(scope="module")
def spark():  # type: ignore[no-untyped-def]
    session = spark_session("local[2]", {"spark.ui.enabled": "false"})
    yield session
    session.stop()


def rows(path: Path) -> pd.DataFrame:
    """An export's rows in (user, rank) order, text as plain strings."""
    frame = pd.read_parquet(path)
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.CategoricalDtype) or frame[column].dtype == object:
            frame[column] = frame[column].astype(str)
    return frame.sort_values(["user_id", "rank"]).reset_index(drop=True)


def test_spark_writes_the_same_rows_as_the_local_export_for_every_user(
    sample_models: Path, spark: object, tmp_path: Path
) -> None:
    users = tmp_path / "users.csv"
    # Known customers, and two the model never saw: they get the fallback lists on both.
    users.write_text("user_id\n13047\n12583\n999991\n17850\n999992\n", encoding="utf-8")
    local = export(
        sample_models, tmp_path / "local.parquet", 10, users=users, now=NOW, progress=False
    )
    summary = export_spark(
        sample_models,
        str(tmp_path / "spark"),
        10,
        users=users,
        now=NOW,
        spark=spark,
        partitions=2,
    )
    assert (tmp_path / "spark" / "_SUCCESS").exists()
    assert summary.users == local.users == 5 and summary.rows == local.rows
    pd.testing.assert_frame_equal(
        rows(tmp_path / "spark"), rows(tmp_path / "local.parquet"), check_dtype=False
    )


def test_every_known_user_of_the_sample_matches(
    sample_models: Path, spark: object, tmp_path: Path
) -> None:
    export(sample_models, tmp_path / "local.parquet", 10, now=NOW, progress=False)
    export_spark(sample_models, str(tmp_path / "spark"), 10, now=NOW, spark=spark)
    pd.testing.assert_frame_equal(
        rows(tmp_path / "spark"), rows(tmp_path / "local.parquet"), check_dtype=False
    )


@pytest.mark.slow
def test_on_the_full_online_retail_log_spark_writes_the_local_exports_rows_and_schema(
    spark: object, tmp_path: Path
) -> None:
    """Every customer of the real log, with the learned ranker served: the same items, ranks,
    sources, reasons and scores, and the same Parquet schema, from both engines."""
    shared_file("online-retail/online_retail.parquet")
    config = load_config(ROOT / "data" / "configs" / "online-retail.toml")
    config = dataclasses.replace(
        config, output=dataclasses.replace(config.output, rejects=tmp_path / "rejects")
    )
    models = tmp_path / "models"
    train(config, out=models, force=True)
    # One clock for both: an export answers as of its time, and time moves between two runs.
    now = ServedModel.load(models).data_end + 86_400
    export(models, tmp_path / "local.parquet", 20, now=now, progress=False)
    export_spark(models, str(tmp_path / "spark"), 20, now=now, spark=spark)
    local, remote = pq.read_table(tmp_path / "local.parquet"), pq.read_table(tmp_path / "spark")
    assert local.schema.remove_metadata() == remote.schema.remove_metadata()
    order = [("user_id", "ascending"), ("rank", "ascending")]
    local, remote = local.sort_by(order), remote.sort_by(order).select(local.column_names)
    assert local.num_rows == remote.num_rows > 70_000
    assert local.equals(remote)


def test_an_existing_output_folder_is_refused(
    sample_models: Path, spark: object, tmp_path: Path
) -> None:
    (tmp_path / "spark").mkdir()
    with pytest.raises(ExportError, match="already exists"):
        export_spark(sample_models, str(tmp_path / "spark"), 10, spark=spark)


def test_the_command_runs_the_export_on_spark(
    sample_models: Path, spark: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "-q",
            "export",
            "--models",
            str(sample_models),
            "--out",
            str(tmp_path / "recs"),
            "--n",
            "5",
            "--engine",
            "spark",
            "--master",
            "local[2]",
        ]
    )
    assert code == EXIT_OK
    assert "on Spark" in capsys.readouterr().out
    assert len(pd.read_parquet(tmp_path / "recs")) == 300 * 5
    code = main(
        [
            "export",
            "--models",
            str(sample_models),
            "--out",
            str(tmp_path / "x"),
            "--engine",
            "spark",
            "--with-tier",
        ]
    )
    assert code == EXIT_BAD_INPUT
