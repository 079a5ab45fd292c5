"""YAML recipes shared by `stopwise sft` and `stopwise tldr`: a mapping of config fields,
plus `--set key=value` overrides (values parsed as YAML)."""

from __future__ import annotations

from pathlib import Path


def read_recipe(path: str | Path, what: str, overrides: dict | None = None) -> dict:
    """The recipe's mapping with `overrides` applied; clear errors for a missing or bad file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"recipe {path} is not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"recipe {path} must be a mapping of {what} keys")
    values.update(overrides or {})
    return values


def parse_overrides(items: list[str]) -> dict:
    """`key=value` strings (value parsed as YAML) into a dict."""
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out
