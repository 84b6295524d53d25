"""The configuration reference (docs/config.md), generated from the config dataclasses.

Every key, its type, its default and what it means (the comments above each field in
recsys/config.py and the class docstrings), so the reference cannot drift from the code:
`recsys config-reference --out docs/config.md` writes it, and a test checks it is current.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from recsys import config as config_module
from recsys.config import Config

_HEADER = """# Configuration reference

Generated from `recsys/config.py` by `recsys config-reference --out docs/config.md`; do not
edit by hand (a test checks that this file is current). Every key of the shop's TOML file,
its type and default, and what it means. Relative paths resolve against the TOML file's folder.
"""


def reference() -> str:
    """The whole reference as Markdown."""
    parts = [_HEADER]
    for key, cls in _sections(Config, ""):
        parts.append(_section(key, cls))
    return "\n".join(parts).rstrip() + "\n"


def write_reference(path: Path) -> Path:
    """Write the reference to `path`; return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(reference(), encoding="utf-8")
    return path


def _sections(cls: type, key: str) -> list[tuple[str, type]]:
    """Every dataclass reachable from cls, with its TOML key, in declaration order."""
    found = [(key, cls)]
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name == "source" or not field.init:
            continue
        inner = _dataclass_in(hints[field.name])
        if inner is not None:
            child = f"{key}.{field.name}" if key else field.name
            if _is_list(hints[field.name]):
                child = f"[{child}]"
            found += _sections(inner, child)
    return found


def _section(key: str, cls: type) -> str:
    title = f"## `[{key}]`" if key and not key.startswith("[") else f"## `[{key}]`" if key else (
        "## Top level")  # fmt: skip
    doc = inspect.getdoc(cls) or ""
    comments = _field_comments(cls)
    hints = typing.get_type_hints(cls)
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for field in dataclasses.fields(cls):
        if field.name == "source" or not field.init:
            continue
        if _dataclass_in(hints[field.name]) is not None:
            continue  # its own section
        meaning = _meaning(key, field.name, comments.get(field.name, "")).replace("|", "\\|")
        rows.append(
            f"| `{field.name}` | {_type_name(hints[field.name])} | {_default(field)} | {meaning} |"
        )
    body = [title, "", doc, ""] if doc else [title, ""]
    if len(rows) > 2:
        body += rows
    return "\n".join(body) + "\n"


def _field_comments(cls: type) -> dict[str, str]:
    """The comment lines right above each field (and a trailing one on its line)."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, str] = {}
    pending: list[str] = []
    previous = ""  # the field on the line before, for fields one comment describes together
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"(\w+)\s*:", stripped)
        if match and match.group(1) in names and match.group(1) not in out:
            name = match.group(1)
            trailing = stripped.split("  # ", 1)[1].strip() if "  # " in stripped else ""
            text = " ".join([*pending, trailing]).strip()
            if not text and previous and out.get(previous):
                text = f"as `{previous}` above."
            out[name] = text
            previous = name
        else:
            previous = ""
        pending = []
    return out


# Meanings of keys that mean the same in every section they appear in.
_COMMON = {
    "enabled": "fit and use it (false: off).",
    "path": "the file or files to read (CSV, gzip CSV or Parquet).",
    "format": '"auto" tells CSV from Parquet by the file name.',
    "encoding": "text encoding of CSV files.",
    "timestamp_unit": 'what numeric times count ("s", "ms", "us", "ns"), or "datetime" for text.',
    "k": "how many neighbours or items each keeps.",
    "name": "its name, as reports and exposure logs show it.",
    "column": "the column the rule tests.",
    "starts_with": "matches values starting with this text.",
    "less_than": "matches numbers below this.",
    "equals": "matches values equal to this text.",
    "on_error": '"quarantine" sets bad rows aside in a rejects file; "strict" stops the load.',
    "duplicates": '"drop" sets exact duplicate rows aside; "keep" keeps them.',
    "models": "folder the model versions are published in.",
    "rejects": "folder the rejected rows are written to.",
}
_COLUMNS = {"user", "item", "timestamp", "event", "quantity", "price", "session", "category",
            "brand", "available", "created", "property", "value", "layout"}  # fmt: skip


def _meaning(key: str, name: str, comment: str) -> str:
    if comment:
        return comment
    if key.endswith("columns") and name in _COLUMNS:
        return f"name of the column holding the {name}."
    return _COMMON.get(name, "")


def _default(field: dataclasses.Field[Any]) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    if dataclasses.is_dataclass(value):
        return "(section)"
    return f"`{_toml(value)}`"


def _toml(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return f'"{value}"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return f"{value:.1f}"
    return str(value)


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in options) + " (optional)"
    if origin is Literal:
        return " \\| ".join(f'`"{a}"`' for a in get_args(tp))
    if origin is tuple:
        return f"list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return f"table of {_type_name(get_args(tp)[1])}"
    names = {int: "integer", float: "number", bool: "true/false", str: "text", Path: "path"}
    if tp in names:
        return names[tp]
    return getattr(tp, "__name__", str(tp))


def _dataclass_in(tp: Any) -> type | None:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType, tuple):
        for arg in get_args(tp):
            if isinstance(arg, type) and dataclasses.is_dataclass(arg):
                return arg
        return None
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def _is_list(tp: Any) -> bool:
    return get_origin(tp) is tuple


# The module the dataclasses live in (their comments are read from its source).
__all__ = ["config_module", "reference", "write_reference"]
