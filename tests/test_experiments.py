"""A shop's A/B experiments: configured in TOML, every visitor assigned by hash, no state kept."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsys.config import (
    BlendConfig,
    Config,
    ExperimentConfig,
    ServingConfig,
    VariantConfig,
    config_from_dict,
    load_config,
)
from recsys.errors import ConfigError
from recsys.experiments import (
    active_experiment,
    assign,
    assign_many,
    bucket,
    experiment_to_dict,
    experiments_from_manifest,
    variant_blend,
    variant_serving,
)
from tests.conftest import ROOT

EVENTS: dict[str, Any] = {
    "path": "events.csv",
    "columns": {"user": "u", "item": "i", "timestamp": "t"},
}

SHOP_TOML = """
[events]
path = "events.csv"
[events.columns]
user = "u"
item = "i"
timestamp = "t"

[blend]
neighbours = 0.5

[serving]
max_per_category = 3

[[experiments]]
name = "reminders-up"
salt = "2024-06-reminders"
forced = { "17850" = "B", "qa-visitor" = "holdout" }

[[experiments.variants]]
name = "A"
share = 0.45

[[experiments.variants]]
name = "B"
share = 0.45
blend = { reminder = 12.0, recent_items = 30 }
chain = ["blend", "trending", "popular"]
available_only = false
n = 12

[[experiments.variants]]
name = "holdout"
share = 0.1
holdout = true

[[experiments]]
name = "old-test"
salt = "2024-01"
enabled = false

[[experiments.variants]]
name = "A"
share = 0.5

[[experiments.variants]]
name = "B"
share = 0.5
exclude_purchased = false
"""


def _experiment(*shares: float, salt: str = "s1", **fields: Any) -> ExperimentConfig:
    names = "ABCDEF"[: len(shares)]
    variants = tuple(VariantConfig(n, s) for n, s in zip(names, shares, strict=True))
    return ExperimentConfig(name="e", salt=salt, variants=variants, **fields)


def _config(experiments: list[dict[str, Any]], **sections: Any) -> Config:
    return config_from_dict({"events": EVENTS, "experiments": experiments, **sections})


def _variants(*shares: float) -> list[dict[str, Any]]:
    names = "ABCDEF"[: len(shares)]
    return [{"name": n, "share": s} for n, s in zip(names, shares, strict=True)]


def test_a_visitor_sees_the_same_variant_on_every_call() -> None:
    experiment = _experiment(0.2, 0.3, 0.5)
    first = [assign(experiment, unit_id).name for unit_id in range(1000)]
    assert [assign(experiment, unit_id).name for unit_id in range(1000)] == first
    assert set(first) == {"A", "B", "C"}


def test_a_visitor_sees_the_same_variant_in_every_process_whatever_its_hash_seed() -> None:
    ids = [*range(17_800, 17_825), *(f"visitor-{i}" for i in range(25))]
    here = [assign(_experiment(0.5, 0.5), unit_id).name for unit_id in ids]
    script = (
        "from recsys.config import ExperimentConfig, VariantConfig\n"
        "from recsys.experiments import assign\n"
        "e = ExperimentConfig('e', 's1', (VariantConfig('A', 0.5), VariantConfig('B', 0.5)))\n"
        f"print(','.join(assign(e, unit_id).name for unit_id in {ids!r}))\n"
    )
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.strip().split(",") == here


def test_a_visitors_bucket_never_changes_between_releases() -> None:
    # Pinned values: a change of hash, separator or scaling would move live visitors between arms.
    assert bucket("s1", 17850) == 0.3325688272813613
    assert [bucket("2024-06-reminders", i) for i in (1, 2, "abc")] == [
        0.3699193372815791,
        0.48931808383139797,
        0.17071319679674068,
    ]
    assert all(0 <= bucket("s1", i) < 1 for i in range(10_000))


def test_an_integer_id_and_its_text_see_the_same_variant() -> None:
    experiment = _experiment(0.5, 0.5)
    assert bucket("s1", 17850) == bucket("s1", "17850") == bucket("s1", np.int64(17850))
    for unit_id in range(17_800, 17_900):
        assert assign(experiment, unit_id) == assign(experiment, str(unit_id))
    as_ints = assign_many(experiment, np.arange(17_800, 17_900))
    as_text = assign_many(experiment, [str(i) for i in range(17_800, 17_900)])
    assert np.array_equal(as_ints, as_text)


def test_float_ids_are_refused_because_their_text_differs() -> None:
    with pytest.raises(TypeError) as err:
        assign(_experiment(0.5, 0.5), 17850.0)
    assert str(err.value) == (
        "unit id 17850.0 is a float, whose text '17850.0' differs from the integer id's; "
        "convert ids to int (or to text) before assigning variants"
    )
    with pytest.raises(TypeError, match=r"unit ids are floats \(float64\)"):
        assign_many(_experiment(0.5, 0.5), np.array([17850.0]))


@pytest.mark.parametrize("shares", [(0.5, 0.5), (0.1, 0.3, 0.6)])
def test_each_variant_gets_its_share_of_the_traffic(shares: tuple[float, ...]) -> None:
    indices = assign_many(_experiment(*shares), np.arange(100_000))
    assert indices.dtype == np.int16
    observed = np.bincount(indices, minlength=len(shares)) / len(indices)
    assert np.abs(observed - np.array(shares)).max() < 0.01


def test_batch_assignment_agrees_with_single_calls() -> None:
    experiment = _experiment(0.1, 0.3, 0.6, forced={"7": "A", "x-9": "C"})
    ids: list[Any] = [*range(2000), *(f"x-{i}" for i in range(2000))]
    expected = [experiment.variants.index(assign(experiment, unit_id)) for unit_id in ids]
    assert assign_many(experiment, ids).tolist() == expected


def test_a_new_salt_reshuffles_the_visitors() -> None:
    ids = np.arange(100_000)
    first = assign_many(_experiment(0.5, 0.5, salt="spring"), ids)
    second = assign_many(_experiment(0.5, 0.5, salt="summer"), ids)
    assert abs(np.corrcoef(first, second)[0, 1]) < 0.02
    assert 0.48 < np.mean(first == second) < 0.52


def test_a_forced_id_sees_its_variant_whatever_its_bucket() -> None:
    # B takes one visitor in a million: only forcing puts 17850 there.
    experiment = _experiment(0.999999, 0.000001, forced={"17850": "B"})
    assert assign(experiment, 17850).name == "B"
    assert assign(experiment, "17850").name == "B"
    assert assign(experiment, 17851).name == "A"
    assert assign_many(experiment, np.array([17849, 17850, 17851])).tolist() == [0, 1, 0]


def test_a_variant_changes_only_the_blend_weights_it_names() -> None:
    base = dataclasses.replace(BlendConfig(), neighbours=0.5)
    variant = VariantConfig("B", 0.5, blend={"reminder": 12.0, "recent_items": 30.0})
    blend = variant_blend(base, variant)
    assert blend.reminder == 12.0
    assert blend.recent_items == 30 and isinstance(blend.recent_items, int)
    unchanged = [f.name for f in dataclasses.fields(BlendConfig)]
    unchanged.remove("reminder")
    unchanged.remove("recent_items")
    assert all(getattr(blend, name) == getattr(base, name) for name in unchanged)
    assert variant_blend(base, VariantConfig("A", 0.5)) == base


def test_a_variant_changes_only_the_serving_settings_it_names() -> None:
    base = ServingConfig(max_per_category=3, exclude_purchased=False)
    variant = VariantConfig("B", 0.5, chain=("blend", "popular"), available_only=False)
    serving = variant_serving(base, variant)
    assert serving == dataclasses.replace(base, chain=("blend", "popular"), available_only=False)
    assert serving.max_per_category == 3 and serving.exclude_purchased is False
    assert variant_serving(base, VariantConfig("A", 0.5)) == base


def test_the_shops_toml_experiments_load(tmp_path: Path) -> None:
    path = tmp_path / "shop.toml"
    path.write_text(SHOP_TOML, encoding="utf-8")
    config = load_config(path)
    assert config == config_from_dict(tomllib.loads(SHOP_TOML), base_dir=tmp_path)
    first, second = config.experiments
    assert [variant.name for variant in first.variants] == ["A", "B", "holdout"]
    assert first.forced == {"17850": "B", "qa-visitor": "holdout"}
    assert first.variants[1] == VariantConfig(
        name="B",
        share=0.45,
        blend={"reminder": 12.0, "recent_items": 30.0},
        chain=("blend", "trending", "popular"),
        available_only=False,
        n=12,
    )
    assert first.variants[2].holdout and not first.variants[0].holdout
    assert second.enabled is False and second.variants[1].exclude_purchased is False
    assert active_experiment(config.experiments) == first
    assert active_experiment(config.experiments[1:]) is None
    assert assign(first, 17850).name == "B" and assign(first, "qa-visitor").holdout


def test_experiments_survive_the_manifest_round_trip_exactly(tmp_path: Path) -> None:
    config = config_from_dict(tomllib.loads(SHOP_TOML), base_dir=tmp_path)
    written = json.dumps([experiment_to_dict(e) for e in config.experiments], sort_keys=True)
    assert experiments_from_manifest(json.loads(written)) == config.experiments
    assert experiments_from_manifest([]) == ()


def test_a_manifest_with_a_bad_experiment_is_refused() -> None:
    data = [experiment_to_dict(_experiment(0.5, 0.5))]
    data[0]["variants"][1]["share"] = 0.6
    with pytest.raises(ConfigError) as err:
        experiments_from_manifest(data)
    assert str(err.value) == "experiments[0].variants: shares must sum to 1 (got 0.5 + 0.6 = 1.1)"


@pytest.mark.parametrize(
    ("experiments", "message"),
    [
        (
            [{"name": "e", "salt": "s", "variants": _variants(0.5, 0.6)}],
            "experiments[0].variants: shares must sum to 1 (got 0.5 + 0.6 = 1.1)",
        ),
        (
            [{"name": "e", "salt": "s", "variants": _variants(1.5, -0.5)}],
            "experiments[0].variants[0].share must be in (0, 1] (got 1.5)",
        ),
        (
            [{"name": "e", "salt": "s", "variants": _variants(1.0)}],
            "experiments[0].variants: an experiment needs at least 2 variants (got 1)",
        ),
        (
            [
                {"name": "e", "salt": "s", "variants": _variants(0.5, 0.5)},
                {"name": "e", "salt": "t", "variants": _variants(0.5, 0.5), "enabled": False},
            ],
            "experiments[1].name 'e' repeats experiments[0].name; names must be unique",
        ),
        (
            [
                {
                    "name": "e",
                    "salt": "s",
                    "variants": [{"name": "A", "share": 0.5}, {"name": "A", "share": 0.5}],
                }
            ],
            "experiments[0].variants[1].name 'A' repeats experiments[0].variants[0].name; "
            "names must be unique",
        ),
        (
            [
                {"name": "e", "salt": "s", "variants": _variants(0.5, 0.5)},
                {"name": "f", "salt": "t", "variants": _variants(0.5, 0.5)},
            ],
            "experiments: 2 experiments are enabled ('e', 'f') but serving applies one at a "
            "time: set enabled = false on all but one",
        ),
        (
            [
                {
                    "name": "e",
                    "salt": "s",
                    "variants": _variants(0.5, 0.5),
                    "forced": {"17850": "C"},
                }
            ],
            "experiments[0].forced.17850: unknown variant 'C' (expected one of ['A', 'B'])",
        ),
        (
            [{"name": "e", "salt": "", "variants": _variants(0.5, 0.5)}],
            "experiments[0].salt must not be empty (any fixed text; changing it reshuffles "
            "every visitor)",
        ),
    ],
)
def test_bad_experiments_are_refused_at_load_naming_the_key(
    experiments: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _config(experiments)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"blend": {"persnal": 3.0}},
            "experiments[0].variants[1].blend: unknown blend field 'persnal' (expected one of "
            f"{sorted(f.name for f in dataclasses.fields(BlendConfig))})",
        ),
        (
            {"blend": {"personal": -1.0}},
            "experiments[0].variants[1].blend.personal must be >= 0 (got -1.0)",
        ),
        (
            {"blend": {"recent_items": 2.5}},
            "experiments[0].variants[1].blend.recent_items must be a whole number (got 2.5)",
        ),
        (
            {"chain": ["blend", "guess", "popular"]},
            "experiments[0].variants[1].chain: unknown strategy 'guess' (expected one of "
            "('blend', 'segment_popular', 'category_popular', 'new_item', 'trending', "
            "'popular'))",
        ),
        (
            {"chain": ["blend"]},
            "experiments[0].variants[1].chain must include 'popular', the fallback that "
            "always answers",
        ),
        (
            {"max_per_category": -1},
            "experiments[0].variants[1].max_per_category must be >= 0 (got -1)",
        ),
        ({"n": 0}, "experiments[0].variants[1].n must be > 0 (got 0)"),
        (
            {"n": 600},
            "experiments[0].variants[1].n must be <= serving.max_n (500) (got 600)",
        ),
        (
            {"holdout": "yes"},
            "experiments[0].variants[1].holdout must be true or false (got a string)",
        ),
    ],
)
def test_bad_variant_overrides_are_refused_at_load_naming_the_key(
    override: dict[str, Any], message: str
) -> None:
    variants = _variants(0.5, 0.5)
    variants[1].update(override)
    with pytest.raises(ConfigError) as err:
        _config([{"name": "e", "salt": "s", "variants": variants}])
    assert str(err.value) == message


def test_a_config_error_in_an_experiment_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "shop.toml"
    path.write_text(SHOP_TOML.replace("share = 0.1\n", "share = 0.2\n"), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}: experiments[0].variants: shares must sum to 1 (got 0.45 + 0.45 + 0.2 = 1.1)"
    )


def test_a_shop_without_experiments_has_none_active() -> None:
    config = config_from_dict({"events": EVENTS})
    assert config.experiments == ()
    assert active_experiment(config.experiments) is None
