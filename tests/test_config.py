"""The shop's configuration is one TOML file, validated at load with errors naming the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.config import load_config
from recsys.errors import ConfigError
from tests.conftest import ROOT


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shop.toml"
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = """
[events]
path = "logs/events.csv"
[events.columns]
user = "u"
item = "i"
timestamp = "t"
"""


def test_minimal_config_gets_sensible_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, MINIMAL))
    assert config.events.path == ((tmp_path / "logs" / "events.csv").resolve(),)
    assert config.events.default_event == "purchase"
    assert config.validation.on_error == "quarantine"
    assert config.validation.duplicates == "drop"
    assert config.matrix.weights == {"view": 1.0, "cart": 4.0, "favourite": 3.0, "purchase": 10.0}
    assert config.timezone == "UTC"
    assert config.output.models == (tmp_path / "models").resolve()


def test_relative_paths_resolve_against_the_config_files_folder(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "shop.toml"
    path.write_text(MINIMAL.replace("logs/events.csv", "../data/e.parquet"), encoding="utf-8")
    config = load_config(path)
    assert config.events.path == ((tmp_path / "data" / "e.parquet").resolve(),)


def test_unknown_key_is_named_with_the_keys_expected(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + 'sesion = "s"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}: unknown key 'events.columns.sesion' (expected one of "
        "['category', 'event', 'item', 'price', 'quantity', 'session', 'timestamp', 'user'])"
    )


def test_missing_required_key_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL.replace('item = "i"\n', ""))
    with pytest.raises(ConfigError, match=r"missing required key 'events\.columns\.item'"):
        load_config(path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            '[validation]\non_error = "ignore"\n',
            "validation.on_error must be one of ['strict', 'quarantine'] (got 'ignore')",
        ),
        (
            '[matrix]\nhalf_life_days = "soon"\n',
            "matrix.half_life_days must be a number (got a string)",
        ),
        (
            "[matrix]\nweights = { click = 1.0 }\n",
            "matrix.weights.click: unknown event type 'click'",
        ),
        ("[matrix]\nweights = { view = -1.0 }\n", "matrix.weights.view must be >= 0 (got -1.0)"),
        ('timezone = "Mars/Olympus"\n', "timezone 'Mars/Olympus' is not an IANA time zone name"),
        ("seed = 1.5\n", "seed must be an integer (got float 1.5)"),
    ],
)
def test_bad_values_are_refused_with_the_key_and_what_was_expected(
    tmp_path: Path, extra: str, message: str
) -> None:
    text = (extra + MINIMAL) if not extra.startswith("[") else (MINIMAL + extra)
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    assert message in str(err.value)


def test_event_mapping_to_unknown_engine_type_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace('timestamp = "t"', 'timestamp = "t"\nevent = "e"')
    text += '[events.event_types]\npv = "pageview"\n'
    with pytest.raises(
        ConfigError, match=r"events\.event_types\.pv: unknown event type 'pageview'"
    ):
        load_config(_write(tmp_path, text))


def test_return_rule_needs_exactly_one_test(tmp_path: Path) -> None:
    text = MINIMAL + '[[events.return_rules]]\ncolumn = "q"\n'
    with pytest.raises(ConfigError, match=r"return rule on column 'q' must set exactly one of"):
        load_config(_write(tmp_path, text))


def test_not_toml_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not valid TOML"):
        load_config(_write(tmp_path, "[events\n"))
    with pytest.raises(ConfigError, match=r"nope\.toml: configuration file not found"):
        load_config(tmp_path / "nope.toml")


def test_config_hash_is_stable_and_changes_with_content(tmp_path: Path) -> None:
    a = load_config(_write(tmp_path, MINIMAL))
    b = load_config(_write(tmp_path, MINIMAL))
    c = load_config(_write(tmp_path, MINIMAL + "[matrix]\nhalf_life_days = 30\n"))
    assert a.hash() == b.hash()
    assert a.hash() != c.hash()


@pytest.mark.parametrize("name", ["sample", "online-retail", "retailrocket"])
def test_shipped_configs_load(name: str) -> None:
    config = load_config(ROOT / "data" / "configs" / f"{name}.toml")
    assert config.events.columns.user


def test_the_annotated_config_in_the_docs_is_a_valid_config() -> None:
    import tomllib

    from recsys.config import config_from_dict

    text = (ROOT / "docs" / "logs-and-config.md").read_text(encoding="utf-8")
    start = text.index("```toml", text.index("# Your shop's logs")) + len("```toml")
    config = config_from_dict(tomllib.loads(text[start : text.index("```", start)]))
    assert config.timezone == "Europe/London"
    assert config.models.als.min_user_items == 2
