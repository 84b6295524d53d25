"""docs/config.md is the configuration reference generated from recsys/config.py, and current."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from recsys.config import Config
from recsys.config_reference import reference

DOCS = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def test_the_committed_config_reference_is_the_generated_one() -> None:
    assert DOCS.read_text(encoding="utf-8") == reference(), (
        "docs/config.md is out of date: run `recsys config-reference --out docs/config.md`"
    )


def test_every_key_of_every_section_is_in_the_reference_with_a_meaning() -> None:
    text = reference()

    def keys(cls: type) -> list[str]:
        hints = typing.get_type_hints(cls)
        found = []
        for field in dataclasses.fields(cls):
            if field.name == "source" or not field.init:
                continue
            inner = typing.get_args(hints[field.name]) or (hints[field.name],)
            nested = [t for t in inner if isinstance(t, type) and dataclasses.is_dataclass(t)]
            if nested:
                found += keys(nested[0])
            else:
                found.append(field.name)
        return found

    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) == len(keys(Config))
    assert all(not line.rstrip().endswith("|  |") for line in rows), "a key without a meaning"
