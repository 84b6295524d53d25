"""Property-based tests of the public entry points: whatever a caller passes, a clear error or a
full, valid answer; whatever a config holds, a ConfigError at load or settings that check out.

Bounded (a few seconds each); `HYPOTHESIS_PROFILE=long` runs many more examples on demand.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")

from hypothesis import HealthCheck, given, settings  # noqa: E402

from recsys.config import ConfigError, config_from_dict  # noqa: E402
from recsys.schema import EVENT_TYPES  # noqa: E402
from serving import Recommender  # noqa: E402

_QUIET = [HealthCheck.function_scoped_fixture]
settings.register_profile("ci", max_examples=60, deadline=None, suppress_health_check=_QUIET)
settings.register_profile("long", max_examples=2000, deadline=None, suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Anything a caller might pass where an id, a count, a list or a time is expected.
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["sku1", "sku5", "sku-fridge", "7", 7, 100, -1, "", " "]),
    st.lists(st.sampled_from(["sku1", "sku2", 3, None, "x"]), max_size=4),
    st.binary(max_size=4),
)


@pytest.fixture(scope="module")
def rec(shop_models: Path) -> Recommender:
    return Recommender.load(shop_models)


def _full_and_valid(found: Any, n: int, rec: Recommender) -> None:
    ids = found.item_ids
    assert len(ids) == len(set(ids)), "an item twice in one list"
    assert len(ids) <= n
    known = set(rec.model.item_ids.tolist())
    assert set(ids) <= known
    for r in found:
        assert isinstance(r.reason, str) and r.reason
        assert math.isfinite(r.score)


@given(user=junk, n=junk, session=junk, exclude=junk, categories=junk, cap=junk, now=junk)
def test_recommend_gives_a_clear_error_or_a_full_valid_list(
    rec: Recommender, user: Any, n: Any, session: Any, exclude: Any, categories: Any, cap: Any,
    now: Any,
) -> None:  # fmt: skip
    try:
        found = rec.recommend(
            user, n, session_items=session, exclude=exclude, categories=categories,
            max_per_category=cap, now=now,
        )  # fmt: skip
    except (ValueError, TypeError) as error:
        assert str(error), "an error must say what was wrong"
        return
    _full_and_valid(found, n, rec)
    if not categories and not exclude and not cap:
        # Nothing filtered away: a list is full whenever the catalogue allows.
        assert len(found) == min(n, len(rec.model.items)) or found == []


@given(item=junk, n=junk)
def test_product_pages_give_a_clear_error_or_a_valid_list(
    rec: Recommender, item: Any, n: Any
) -> None:
    for call in (rec.similar_items, rec.complementary_items):
        try:
            found = call(item, n)
        except (ValueError, TypeError) as error:
            assert str(error)
            continue
        _full_and_valid(found, n, rec)
        assert item not in found.item_ids


@given(user=junk)
def test_profile_gives_a_clear_error_none_or_a_portrait(rec: Recommender, user: Any) -> None:
    try:
        found = rec.profile(user)
    except (ValueError, TypeError) as error:
        assert str(error)
        return
    assert found is None or isinstance(found, dict)


@given(user=junk, item=junk, kind=st.one_of(st.sampled_from(EVENT_TYPES), junk), when=junk,
       quantity=junk)  # fmt: skip
def test_a_live_event_is_recorded_or_refused_and_the_next_answer_still_comes(
    shop_models: Path, user: Any, item: Any, kind: Any, when: Any, quantity: Any
) -> None:
    rec = Recommender.load(shop_models)
    try:
        rec.record_event(user, item, kind, when, quantity=quantity)
    except (ValueError, TypeError) as error:
        assert str(error)
        assert rec.live.stats().recorded == 0
    found = rec.recommend(user if isinstance(user, int) and not isinstance(user, bool) else None, 5)
    _full_and_valid(found, 5, rec)


# A config value of any kind at a handful of keys of every type (numbers, counts, switches,
# names, tables): a ConfigError at load, or a config whose sections check out.
config_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**12), 10**12),
    st.booleans(),
    st.text(max_size=8),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(-2, 2), max_size=2),
)
KEYS = [
    ("blend", "personal"), ("blend", "recent_items"), ("blend", "session_decay"),
    ("matrix", "half_life_days"), ("matrix", "weights"), ("matrix", "repeats"),
    ("models.als", "factors"), ("models.als", "regularization"), ("models.tifu", "alpha"),
    ("training", "holdout_days"), ("training", "gate_baselines"), ("ranker", "periods"),
    ("serving", "max_n"), ("serving.live", "ttl_hours"), ("validation", "max_future_days"),
    ("portraits", "quantiles"), (None, "seed"), (None, "timezone"),
]  # fmt: skip


@given(where=st.sampled_from(KEYS), value=config_value)
def test_any_config_value_is_a_config_error_or_a_checked_config(
    tmp_path: Path, where: tuple[str | None, str], value: Any
) -> None:
    section, key = where
    data: dict[str, Any] = {
        "events": {"path": "e.csv", "columns": {"user": "u", "item": "i", "timestamp": "t"}}
    }
    if section is None:
        data[key] = value
    else:
        table = data
        for part in section.split("."):
            table = table.setdefault(part, {})
        table[key] = value
    try:
        config = config_from_dict(data, base_dir=tmp_path)
    except ConfigError as error:
        assert key in str(error) or section is None or "." in str(error)
        return
    # Accepted: every number in the config is finite (NaN and infinity never get through).
    for number in _numbers(config.to_dict()):
        assert math.isfinite(number)


def _numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _numbers(v)]
    if isinstance(value, list | tuple):
        return [x for v in value for x in _numbers(v)]
    return []


# --- generated event files: every row accepted or rejected with its reason and row number ---

_GOOD_TIME = 1_700_000_000
field_values = {
    "u": st.one_of(st.integers(1, 30), st.sampled_from(["", "abc", "17.0", " 5 ", "-3"])),
    "i": st.one_of(st.sampled_from(["a", "b", "c", "d", "e"]), st.sampled_from(["", "x y"])),
    "t": st.one_of(
        st.integers(_GOOD_TIME, _GOOD_TIME + 86_400 * 40),
        st.sampled_from(["", "soon", "-1", "99999999999999", "1e400", "nan"]),
    ),
    "e": st.sampled_from(["view", "cart", "buy", "fav", "click", ""]),
    "q": st.one_of(st.integers(-3, 5), st.sampled_from(["", "x", "inf", "1e40", "0.5"])),
    "p": st.one_of(st.floats(0, 100, allow_nan=False), st.sampled_from(["", "-1", "inf", "z"])),
}
event_rows = st.lists(st.fixed_dictionaries(field_values), min_size=1, max_size=25)


def _write_log(folder: Path, rows: list[dict[str, Any]], kind: str) -> str:
    import gzip

    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(field_values)).astype(str)
    if kind == "parquet":
        frame.to_parquet(folder / "events.parquet", index=False)
        return "events.parquet"
    text = frame.to_csv(index=False)
    if kind == "csv.gz":
        (folder / "events.csv.gz").write_bytes(gzip.compress(text.encode()))
        return "events.csv.gz"
    (folder / "events.csv").write_text(text, encoding="utf-8")
    return "events.csv"


def _log_config(folder: Path, name: str) -> Any:
    return config_from_dict(
        {
            "events": {
                "path": name,
                "timestamp_unit": "s",
                "event_types": {"view": "view", "cart": "cart", "buy": "purchase",
                                "fav": "favourite"},
                "columns": {"user": "u", "item": "i", "timestamp": "t", "event": "e",
                            "quantity": "q", "price": "p"},
            },
            "validation": {"on_error": "quarantine", "duplicates": "keep"},
            "output": {"models": "models", "rejects": "rejects"},
            "models": {"als": {"factors": 4, "iterations": 2}},
            "ranker": {"enabled": False},
        },
        base_dir=folder,
    )  # fmt: skip


@given(rows=event_rows, kind=st.sampled_from(["csv", "csv.gz", "parquet"]))
def test_every_row_of_a_generated_log_is_accepted_or_rejected_with_reason_and_row(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, Any]], kind: str
) -> None:
    import pandas as pd

    from recsys.errors import EventsSchemaError
    from recsys.ingest import load_events
    from recsys.schema import REASON_CODES

    folder = tmp_path_factory.mktemp("log")
    config = _log_config(folder, _write_log(folder, rows, kind))
    try:
        log = load_events(config)
        report = log.report
    except EventsSchemaError as error:
        assert "no row was accepted" in str(error)
        rejects = pd.read_csv(folder / "rejects" / "events.rejects.csv", dtype=str)
        assert len(rejects) == len(rows)
        return
    assert report.rows_read == len(rows) == report.accepted + sum(report.rejected.values())
    if report.rejected:
        rejects = pd.read_csv(report.rejects_path, dtype=str, keep_default_na=False)
        assert len(rejects) == sum(report.rejected.values())
        assert set(rejects["reason"]) <= set(REASON_CODES)
        numbers = rejects["row"].astype(int)
        assert numbers.between(1, len(rows)).all() and numbers.is_unique


@settings(max_examples=6)
@given(rows=event_rows)
def test_the_accepted_rows_of_a_generated_log_train_and_serve(
    tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, Any]]
) -> None:
    import warnings

    from training.job import train

    # A shop's worth of good rows, then the generated ones: there is always something to train.
    good = [
        {"u": u, "i": "abcde"[(u + k) % 5], "t": _GOOD_TIME + 86_400 * k + u, "e": "buy",
         "q": 1, "p": 2.5}
        for u in range(1, 16) for k in range(0, 30, 3)
    ]  # fmt: skip
    folder = tmp_path_factory.mktemp("shop")
    config = _log_config(folder, _write_log(folder, good + rows, "csv"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # accepted rows train and serve without a warning
        result = train(config, force=True)
        rec = Recommender.load(result.path)
        for user_id in rec.model.users.ids[:3].tolist():
            assert len(rec.recommend(user_id, 3)) == 3
        assert len(rec.recommend(None, 3)) == 3


@given(
    values=st.lists(st.integers(-5, 300), max_size=150),
    among=st.lists(st.integers(-5, 300), max_size=150),
    invert=st.booleans(),
)
def test_item_membership_agrees_with_numpy_for_any_lists(
    values: list[int], among: list[int], invert: bool
) -> None:
    # The filters' membership test takes a faster path for longer lists; both must be isin.
    import numpy as np

    from recsys.models.base import member_mask

    v, a = np.asarray(values, dtype=np.int64), np.asarray(among, dtype=np.int32)
    assert np.array_equal(member_mask(v, a, invert), np.isin(v, a, invert=invert))
