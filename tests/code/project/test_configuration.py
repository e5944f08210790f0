"""docs/configuration.md lists every env key, with the default the code or env.yaml really has."""

from __future__ import annotations

import json
import re
from dataclasses import MISSING, fields

import yaml

from nbmlops.envfile import PLOOMBER_KEYS, placeholders
from nbmlops.settings import BLOCKS
from tests.conftest import PROJECT

ROW = re.compile(r"^\| `([\w.]+)` \| (.+?) \| (.+) \|$", re.M)


def documented() -> dict[str, str]:
    """key -> default column, from the tables of docs/configuration.md."""
    text = (PROJECT / "docs" / "configuration.md").read_text(encoding="utf-8")
    return {key: default.strip("`") for key, default, _ in ROW.findall(text)}


def as_text(value) -> str:
    """A value as the page writes it: YAML words, lists in brackets."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(as_text, value)) + "]"
    plain = isinstance(value, str) and (value == "" or value[0] not in "{'\"")
    if plain:
        try:
            same = yaml.safe_load(f"[{value}]") == [value]
        except yaml.YAMLError:
            same = False
        if not same:
            return json.dumps(value)  # quoted where YAML would read another value (or none)
    return str(value)


def test_every_settings_field_is_documented_with_its_default():
    docs = documented()
    for block, settings in BLOCKS.items():
        for f in fields(settings):
            key = f"{block}.{f.name}"
            assert key in docs, f"{key} is missing from docs/configuration.md"
            required = f.default is MISSING and f.default_factory is MISSING
            expected = "required" if required else as_text(f.default)
            assert docs[key] == expected, f"{key}: page says {docs[key]!r}, the code {expected!r}"


def test_every_key_of_the_pipeline_and_env_yaml_is_documented_with_its_value():
    docs = documented()
    pipeline = placeholders((PROJECT / "pipeline.yaml").read_text(encoding="utf-8"))
    env = yaml.safe_load((PROJECT / "env.yaml").read_text(encoding="utf-8"))
    for key in sorted((pipeline - PLOOMBER_KEYS) | set(env)):
        if key in BLOCKS:
            continue  # documented field by field
        assert key in docs, f"{key} is missing from docs/configuration.md"
        if not isinstance(env.get(key), dict):
            assert docs[key] == as_text(env[key]), f"{key}: page says {docs[key]!r}"


def test_the_page_names_no_key_that_does_not_exist():
    pipeline = placeholders((PROJECT / "pipeline.yaml").read_text(encoding="utf-8"))
    known = (pipeline - PLOOMBER_KEYS) | {
        f"{block}.{f.name}" for block, settings in BLOCKS.items() for f in fields(settings)
    }
    assert set(documented()) - known == set()
    assert len(documented()) > 30  # the tables were read
