"""A/B experiments: which variant a visitor sees, decided by hashing, with no stored state.

A unit id is hashed as its text, `str(unit_id)`, so the int 17850, numpy's int64 17850 and the
text "17850" land in the same variant; floats are refused, since 17850.0 reads "17850.0".
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from recsys.config import (
    BlendConfig,
    ExperimentConfig,
    ServingConfig,
    VariantConfig,
    check_experiments,
    section_from_dict,
)
from recsys.errors import ConfigError

# Between salt and id, so that salt "ab" + id "1" and salt "a" + id "b1" hash differently.
_SEPARATOR = "\x1f"
# The top 53 bits of the 64-bit hash: every bucket is then an exact double below 1, whereas a
# 64-bit value / 2**64 rounds up to 1.0 for the top 2**10 hashes.
_SHIFT = 64 - 53
_SCALE = 2.0**-53


def bucket(salt: str, unit_id: object) -> float:
    """Return the unit's bucket in [0, 1): blake2b of salt and id text, as a fraction."""
    return _bucket_of_text(salt, _unit_text(unit_id))


def assign(experiment: ExperimentConfig, unit_id: object) -> VariantConfig:
    """Return the variant a unit sees: its forced variant, else the one its bucket falls in."""
    text = _unit_text(unit_id)
    forced = experiment.forced.get(text)
    if forced is not None:
        return experiment.variants[_variant_index(experiment, forced)]
    index = bisect.bisect_right(_bounds(experiment), _bucket_of_text(experiment.salt, text))
    # Shares may sum to 1 - 1e-9: the last variant also takes the buckets above their sum.
    return experiment.variants[min(index, len(experiment.variants) - 1)]


def assign_many(experiment: ExperimentConfig, unit_ids: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Return each unit's variant index (int16) into experiment.variants, as assign() picks."""
    texts = _unit_texts(unit_ids)
    prefix = f"{experiment.salt}{_SEPARATOR}"
    blake2b = hashlib.blake2b
    digests = b"".join([blake2b((prefix + t).encode(), digest_size=8).digest() for t in texts])
    hashes = np.frombuffer(digests, dtype=">u8")
    buckets = (hashes >> np.uint64(_SHIFT)).astype(np.float64) * _SCALE
    index = np.searchsorted(np.asarray(_bounds(experiment)), buckets, side="right")
    result = np.minimum(index, len(experiment.variants) - 1).astype(np.int16)
    if experiment.forced:
        forced = {
            text: _variant_index(experiment, name) for text, name in experiment.forced.items()
        }
        for position, text in enumerate(texts):
            if text in forced:
                result[position] = forced[text]
    return result


def active_experiment(experiments: Sequence[ExperimentConfig]) -> ExperimentConfig | None:
    """Return the enabled experiment, or None if every one is off."""
    enabled = [experiment for experiment in experiments if experiment.enabled]
    if len(enabled) > 1:
        names = ", ".join(repr(experiment.name) for experiment in enabled)
        raise ConfigError(
            f"experiments: {len(enabled)} experiments are enabled ({names}) but serving applies "
            "one at a time: set enabled = false on all but one"
        )
    return enabled[0] if enabled else None


def variant_blend(base: BlendConfig, variant: VariantConfig) -> BlendConfig:
    """Return the base blend with the variant's blend overrides, checked again."""
    return dataclasses.replace(base, **variant.blend_overrides())


def variant_serving(base: ServingConfig, variant: VariantConfig) -> ServingConfig:
    """Return the base serving defaults with the variant's chain and filters, checked again."""
    return dataclasses.replace(base, **variant.serving_overrides())


def experiment_to_dict(experiment: ExperimentConfig) -> dict[str, Any]:
    """Return the experiment as JSON-ready data that experiments_from_manifest reads back."""
    data = dataclasses.asdict(experiment)
    # TOML has no null, so the builder takes none: an unset override is left out instead.
    data["variants"] = [
        {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in variant.items()
            if value is not None
        }
        for variant in data["variants"]
    ]
    return data


def experiments_from_manifest(
    data: list[dict[str, Any]],
    blend: BlendConfig | None = None,
    serving: ServingConfig | None = None,
) -> tuple[ExperimentConfig, ...]:
    """Build and check experiments from a manifest's list (experiment_to_dict of each)."""
    if not isinstance(data, list):
        raise ConfigError(
            f"experiments must be a list of experiment tables (got {type(data).__name__})"
        )
    experiments = tuple(
        section_from_dict(ExperimentConfig, table, f"experiments[{i}]")
        for i, table in enumerate(data)
    )
    check_experiments(experiments, blend, serving)
    return experiments


def _unit_text(unit_id: object) -> str:
    if isinstance(unit_id, float | np.floating):
        raise TypeError(
            f"unit id {unit_id!r} is a float, whose text {str(unit_id)!r} differs from the "
            "integer id's; convert ids to int (or to text) before assigning variants"
        )
    return str(unit_id)


def _unit_texts(unit_ids: Sequence[Any] | np.ndarray) -> list[str]:
    if isinstance(unit_ids, np.ndarray):
        if unit_ids.dtype.kind == "f":
            raise TypeError(
                f"unit ids are floats ({unit_ids.dtype}), whose text ('17850.0') differs from "
                "the integer ids' ('17850'); convert them to int (or to text) first"
            )
        if unit_ids.dtype.kind in "iuU":
            return [str(unit_id) for unit_id in unit_ids.tolist()]
        unit_ids = unit_ids.tolist()
    return [_unit_text(unit_id) for unit_id in unit_ids]


def _bucket_of_text(salt: str, text: str) -> float:
    digest = hashlib.blake2b(f"{salt}{_SEPARATOR}{text}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> _SHIFT) * _SCALE


def _bounds(experiment: ExperimentConfig) -> list[float]:
    return list(itertools.accumulate(variant.share for variant in experiment.variants))


def _variant_index(experiment: ExperimentConfig, name: str) -> int:
    for i, variant in enumerate(experiment.variants):
        if variant.name == name:
            return i
    names = [variant.name for variant in experiment.variants]
    raise ConfigError(
        f"experiment {experiment.name!r}: forced variant {name!r} is not one of its variants "
        f"{names}; fix the experiment's forced table"
    )
