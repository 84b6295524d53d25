"""Tests of the seeded synthetic RetailRocket-format log used for speed and memory benchmarks."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from training.synthetic import SyntheticPaths, SyntheticShape, generate_retailrocket

SCALE = 0.01
SHAPE = SyntheticShape().scaled(SCALE)
SEED = 7  # seed of the shared log
START_MS = 1_430_611_200_000  # 2015-05-03T00:00:00Z
END_MS = START_MS + 138 * 86_400_000


@dataclass(frozen=True)
class Log:
    """One generated CSV log, read back with pandas."""

    paths: SyntheticPaths
    events: pd.DataFrame
    properties: pd.DataFrame
    tree: pd.DataFrame


def _digests(paths: SyntheticPaths) -> dict[str, str]:
    """Return the sha256 of each written file."""
    files = (paths.events, paths.item_properties, paths.category_tree)
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in files}


def _read_events(path: Path) -> pd.DataFrame:
    """Read an events file the way a user of the real dataset would."""
    return pd.read_csv(path, dtype={"transactionid": "Int64"})


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Log]:
    """Generate one small log for the read-only tests, and check afterwards nobody changed it."""
    paths = generate_retailrocket(tmp_path_factory.mktemp("log"), SHAPE, seed=SEED)
    before = _digests(paths)
    yield Log(
        paths=paths,
        events=_read_events(paths.events),
        properties=pd.read_csv(paths.item_properties, dtype={"value": "str"}),
        tree=pd.read_csv(paths.category_tree, dtype={"parentid": "Int64"}),
    )
    assert _digests(paths) == before


def _preceded_by(later: pd.DataFrame, earlier: pd.DataFrame) -> pd.Series:
    """Tell for each row of later whether earlier has the same (visitor, item) strictly before."""
    keyed = later.reset_index(names="row")[["row", "visitorid", "itemid", "timestamp"]]
    pairs = keyed.merge(
        earlier[["visitorid", "itemid", "timestamp"]],
        on=["visitorid", "itemid"],
        suffixes=("", "_earlier"),
    )
    hits = pairs.loc[pairs["timestamp_earlier"] < pairs["timestamp"], "row"].unique()
    return pd.Series(later.index.isin(hits), index=later.index)


@pytest.mark.parametrize("scale", [0.005, 0.0137])
def test_generated_log_has_retailrocket_event_counts_at_requested_scale(
    tmp_path: Path, scale: float
) -> None:
    paths = generate_retailrocket(tmp_path, SyntheticShape().scaled(scale), seed=1)

    counts = _read_events(paths.events)["event"].value_counts().to_dict()

    assert counts == {
        "view": round(2_664_312 * scale),
        "addtocart": round(69_332 * scale),
        "transaction": round(22_457 * scale),
    }


@pytest.mark.parametrize("scale", [0.005, 0.0137])
def test_generated_log_has_exactly_the_requested_distinct_visitors_and_items(
    tmp_path: Path, scale: float
) -> None:
    paths = generate_retailrocket(tmp_path, SyntheticShape().scaled(scale), seed=1)

    events = _read_events(paths.events)

    assert events["visitorid"].nunique() == round(1_407_580 * scale)
    assert events["itemid"].nunique() == round(235_061 * scale)


def test_full_scale_shape_carries_retailrocket_published_figures() -> None:
    shape = SyntheticShape()

    assert shape.views + shape.carts + shape.transactions == 2_756_101
    assert (shape.visitors, shape.items, shape.categories) == (1_407_580, 235_061, 1_669)
    assert SyntheticShape().scaled(0.01) == SyntheticShape(
        visitors=14_076, items=2_351, views=26_643, carts=693, transactions=225, categories=17
    )


def test_transaction_id_is_filled_exactly_on_transaction_rows(log: Log) -> None:
    events = log.events

    is_transaction = events["event"] == "transaction"

    assert events["transactionid"].notna().equals(is_transaction)


def test_a_transaction_is_one_visitor_at_one_moment_and_some_hold_several_items(log: Log) -> None:
    purchases = log.events[log.events["event"] == "transaction"]

    per_transaction = purchases.groupby("transactionid").agg(
        rows=("itemid", "size"),
        visitors=("visitorid", "nunique"),
        moments=("timestamp", "nunique"),
    )

    assert (per_transaction["visitors"] == 1).all()
    assert (per_transaction["moments"] == 1).all()
    assert (per_transaction["rows"] > 1).sum() >= 10
    assert 1.1 <= per_transaction["rows"].mean() <= 1.5


def test_most_purchases_follow_a_view_and_a_cart_of_the_same_item_by_the_same_visitor(
    log: Log,
) -> None:
    events = log.events
    views = events[events["event"] == "view"]
    carts = events[events["event"] == "addtocart"]
    purchases = events[events["event"] == "transaction"]

    funnel = _preceded_by(purchases, views) & _preceded_by(purchases, carts)

    assert funnel.mean() >= 0.8


def test_most_carts_follow_a_view_of_the_same_item_by_the_same_visitor(log: Log) -> None:
    events = log.events
    views = events[events["event"] == "view"]
    carts = events[events["event"] == "addtocart"]

    assert _preceded_by(carts, views).mean() >= 0.9


def test_some_visitors_buy_the_same_item_again_later(log: Log) -> None:
    purchases = log.events[log.events["event"] == "transaction"]

    per_pair = purchases.groupby(["visitorid", "itemid"]).agg(
        transactions=("transactionid", "nunique"), moments=("timestamp", "nunique")
    )

    assert ((per_pair["transactions"] > 1) & (per_pair["moments"] > 1)).sum() >= 3


def test_item_popularity_and_visitor_activity_are_heavy_tailed(log: Log) -> None:
    events = log.events
    views_per_item = events[events["event"] == "view"].groupby("itemid").size()
    events_per_visitor = events.groupby("visitorid").size()

    top_percent = views_per_item.nlargest(len(views_per_item) // 100).sum()

    assert top_percent / views_per_item.sum() >= 0.2
    assert events_per_visitor.median() <= 2
    assert (events_per_visitor == 1).mean() >= 0.5
    assert events_per_visitor.max() >= 100


def test_visitors_browse_in_sessions_within_a_category(log: Log) -> None:
    categories = log.properties[log.properties["property"] == "categoryid"]
    category_of = categories.drop_duplicates("itemid").set_index("itemid")["value"]
    views = log.events[log.events["event"] == "view"].sort_values(["visitorid", "timestamp"])
    category = views["itemid"].map(category_of).to_numpy()
    visitor = views["visitorid"].to_numpy()
    same_visitor = visitor[1:] == visitor[:-1]

    gap_ms = np.diff(views["timestamp"].to_numpy())[same_visitor]
    same_category = (category[1:] == category[:-1])[same_visitor]
    in_session = gap_ms < 30 * 60_000

    assert in_session.mean() >= 0.5
    assert np.median(gap_ms[in_session]) < 5 * 60_000
    assert same_category[in_session].mean() >= 0.8


def test_events_fall_inside_the_requested_period(log: Log) -> None:
    timestamps = log.events["timestamp"]

    assert timestamps.min() >= START_MS
    assert timestamps.max() < END_MS


def test_every_item_in_events_has_a_category_that_exists_in_the_tree(log: Log) -> None:
    categories = log.properties[log.properties["property"] == "categoryid"]

    assert set(log.events["itemid"]) <= set(categories["itemid"])
    assert set(categories["value"].astype(int)) <= set(log.tree["categoryid"])


def test_category_tree_is_a_shallow_forest_of_the_requested_size(log: Log) -> None:
    tree = log.tree
    parent_of = dict(zip(tree["categoryid"], tree["parentid"], strict=True))

    def depth(category: int) -> int:
        steps = 0
        while not pd.isna(parent_of[category]):
            category, steps = int(parent_of[category]), steps + 1
        return steps

    depths = [depth(category) for category in tree["categoryid"]]
    assert len(tree) == tree["categoryid"].nunique() == SHAPE.categories
    assert set(tree["parentid"].dropna()) <= set(tree["categoryid"])
    assert 1 <= tree["parentid"].isna().sum() < len(tree)
    assert max(depths) <= 3


def test_item_properties_hold_availability_snapshots_and_a_hashed_price(log: Log) -> None:
    properties = log.properties
    available = properties[properties["property"] == "available"]
    price = properties[properties["property"] == "790"]

    assert set(properties["property"]) == {"categoryid", "available", "790"}
    assert set(available["value"]) == {"0", "1"}
    assert (available.groupby("itemid").size() >= 2).any()
    assert price["value"].str.fullmatch(r"n\d+\.000").all()
    assert properties["timestamp"].between(START_MS, END_MS - 1).all()
    # The real file is ~20M rows; ours stays near 4.5 rows per item (~1.1M at full scale).
    assert len(properties) <= 5 * properties["itemid"].nunique()


def test_csv_files_use_retailrocket_headers_and_unquoted_fields(log: Log) -> None:
    events_text = log.paths.events.read_text()
    lines = events_text.splitlines()
    views = [line for line in lines if ",view," in line]
    purchases = [line for line in lines if ",transaction," in line]

    assert lines[0] == "timestamp,visitorid,event,itemid,transactionid"
    assert all(re.fullmatch(r"\d{13},\d+,view,\d+,", line) for line in views)
    assert all(re.fullmatch(r"\d{13},\d+,transaction,\d+,\d+", line) for line in purchases)
    assert '"' not in events_text
    assert log.paths.item_properties.read_text().startswith("timestamp,itemid,property,value\n")
    assert log.paths.category_tree.read_text().startswith("categoryid,parentid\n")


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", "parquet"])
def test_same_seed_writes_identical_bytes_and_another_seed_differs(
    tmp_path: Path, fmt: str
) -> None:
    first = generate_retailrocket(tmp_path / "a", SHAPE, seed=3, fmt=fmt)
    again = generate_retailrocket(tmp_path / "b", SHAPE, seed=3, fmt=fmt)
    other = generate_retailrocket(tmp_path / "c", SHAPE, seed=4, fmt=fmt)

    assert first.events.name == f"events.{fmt}"
    assert _digests(first) == _digests(again)
    assert _digests(first)[first.events.name] != _digests(other)[other.events.name]


def test_parquet_and_gzip_outputs_hold_the_same_log_as_csv(tmp_path: Path, log: Log) -> None:
    parquet = generate_retailrocket(tmp_path / "pq", SHAPE, seed=SEED, fmt="parquet")
    gzipped = generate_retailrocket(tmp_path / "gz", SHAPE, seed=SEED, fmt="csv.gz")

    for name in ("events", "item_properties", "category_tree"):
        from_csv = pacsv.read_csv(getattr(log.paths, name))
        from_gzip = pacsv.read_csv(getattr(gzipped, name))
        from_parquet = pq.read_table(getattr(parquet, name))
        assert from_parquet.column_names == from_csv.column_names
        assert from_parquet.to_pandas().equals(from_csv.to_pandas())
        assert from_gzip.equals(from_csv)

    schema = pq.read_schema(parquet.events)
    assert schema.field("transactionid").type == pa.int64()
    assert schema.field("transactionid").nullable
    assert (
        pd.read_parquet(parquet.events, dtype_backend="numpy_nullable")["transactionid"].dtype
        == pd.Int64Dtype()
    )


@pytest.mark.parametrize(
    ("shape", "seed", "fmt", "message"),
    [
        (SHAPE, 0, "xlsx", "fmt must be one of csv, csv.gz, parquet (got 'xlsx')"),
        (SHAPE, -1, "csv", "seed must be a non-negative integer (got -1)"),
        (
            SyntheticShape(views=0),
            0,
            "csv",
            "shape.views must be a positive integer (got 0)",
        ),
        (
            SyntheticShape().scaled(1e-6),
            0,
            "csv",
            "shape.items must be a positive integer (got 0)",
        ),
        (
            SyntheticShape(visitors=10, items=500, views=100, carts=5, transactions=2),
            0,
            "csv",
            "shape.items (500) must not exceed shape.views (100): "
            "every item needs at least one view",
        ),
        (
            SyntheticShape(start="May 3rd"),
            0,
            "csv",
            "shape.start must be an ISO date such as '2015-05-03' (got 'May 3rd')",
        ),
        (
            SyntheticShape(days=0.5),
            0,
            "csv",
            "shape.days must be a number from 1 to 100000 (got 0.5)",
        ),
    ],
)
def test_bad_arguments_raise_value_error_before_anything_is_written(
    tmp_path: Path, shape: SyntheticShape, seed: int, fmt: str, message: str
) -> None:
    out_dir = tmp_path / "out"

    with pytest.raises(ValueError) as error:
        generate_retailrocket(out_dir, shape, seed=seed, fmt=fmt)

    assert str(error.value) == message
    assert not out_dir.exists()


@pytest.mark.parametrize("factor", [0, -2.0, float("nan")])
def test_scaling_by_a_non_positive_factor_raises_value_error(factor: float) -> None:
    with pytest.raises(ValueError) as error:
        SyntheticShape().scaled(factor)

    assert str(error.value) == f"scale factor must be a positive finite number (got {factor!r})"


def test_a_heavy_tailed_shop_has_the_same_totals_and_visitors_with_thousands_of_events(
    tmp_path: Path,
) -> None:
    from training.synthetic import SyntheticShape, generate_retailrocket

    shape = SyntheticShape(activity="heavy", max_visitor_views=1_000).scaled(0.05)
    light = SyntheticShape(max_visitor_views=1_000).scaled(0.05)
    heavy_log = pd.read_parquet(generate_retailrocket(tmp_path / "h", shape, fmt="parquet").events)
    light_log = pd.read_parquet(generate_retailrocket(tmp_path / "l", light, fmt="parquet").events)
    assert len(heavy_log) == len(light_log)
    assert heavy_log["visitorid"].nunique() == light_log["visitorid"].nunique()
    views = heavy_log[heavy_log["event"] == "view"].groupby("visitorid").size()
    assert views.max() <= 1_000  # the cap holds
    busy = (views >= 500).sum()
    light_views = light_log[light_log["event"] == "view"].groupby("visitorid").size()
    assert busy > (light_views >= 500).sum()


def test_an_unknown_activity_is_refused(tmp_path: Path) -> None:
    from training.synthetic import SyntheticShape, generate_retailrocket

    with pytest.raises(ValueError, match="activity must be 'light' or 'heavy'"):
        generate_retailrocket(tmp_path, SyntheticShape(activity="wild").scaled(0.01))
