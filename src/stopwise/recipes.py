"""YAML recipes shared by `stopwise sft` and `stopwise tldr`: a mapping of config fields,
plus `--set key=value` overrides (values parsed as YAML)."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from pathlib import Path


def read_recipe(path: str | Path, what: str, overrides: dict | None = None, kind: str = "recipe") -> dict:
    """The YAML file's mapping (a recipe, or `kind` of file) with `overrides` applied; clear
    errors for a missing or bad file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{kind} {path} is not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{kind} {path} must be a mapping of {what} keys")
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


def config_values(values, config_cls, source: str, float_keys: Iterable[str] = ()) -> dict:
    """A recipe mapping checked against `config_cls`'s fields: an unknown key is an error naming
    it (with the closest field), and `float_keys` written as strings become numbers (YAML
    reads 1e-5, without a dot, as a string)."""
    name = config_cls.__name__
    if not isinstance(values, dict):
        raise ValueError(f"{source}: expected a mapping of {name} keys")
    known = {f.name for f in dataclasses.fields(config_cls)}
    for key in values:
        if key not in known:
            hint = difflib.get_close_matches(str(key), known, n=1)
            raise ValueError(
                f"{source}: unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; see {name} for the keys"
            )
    values = dict(values)
    for key in float_keys:
        if isinstance(values.get(key), str):
            try:
                values[key] = float(values[key])
            except ValueError:
                raise ValueError(f"{source}: {key} must be a number, got {values[key]!r}") from None
    return values
