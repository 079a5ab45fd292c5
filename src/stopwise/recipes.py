"""Configs from YAML recipes, the one path of `stopwise sft`, `stopwise tldr` and `stopwise check`:
a recipe (a mapping of a config dataclass's fields), then `--set key=value` overrides (values
parsed as YAML) and flags on top, each key and value checked against the dataclass's fields."""

from __future__ import annotations

import difflib
import json
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml


def option(default, help: str, **metadata):
    """A config field with its --help (and more HfArgumentParser `metadata`, e.g. choices); a
    mutable default is copied for each instance, a config class default built for each."""
    metadata = {"help": help, **metadata}
    if isinstance(default, type):
        return field(default_factory=default, metadata=metadata)
    if isinstance(default, (dict, list)):
        value = default
        return field(default_factory=lambda: json.loads(json.dumps(value)), metadata=metadata)
    return field(default=default, metadata=metadata)


def read_recipe(path: str | Path, what: str, kind: str = "recipe") -> dict:
    """The YAML file's mapping (a recipe, or `kind` of file); clear errors for a missing or bad file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind} {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{kind} {path} is not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise ValueError(f"{kind} {path} must be a mapping of {what} keys")
    return values


def parse_overrides(items: list[str]) -> dict:
    """`key=value` strings (value parsed as YAML) into a dict."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def load_config(cls, path: str | Path | None = None, values: dict | None = None, source: str | None = None):
    """A `cls` from the recipe at `path` (if any) with `values` winning over it: an unknown key is
    an error naming the closest field, a value of the wrong type one naming its field, and every
    error names `source` (default: the recipe)."""
    source = source or (str(path) if path else "config")
    values = {**(read_recipe(path, cls.__name__) if path else {}), **(values or {})}
    hints = typing.get_type_hints(cls)
    try:
        for key in values:
            if key not in hints:
                renamed = getattr(cls, "RENAMED", {}).get(key)
                if renamed:  # "new", or ("new", why)
                    new, why = (renamed, "TRL's name for it") if isinstance(renamed, str) else renamed
                    raise ValueError(f"{key!r} is now {new!r} ({why})")
                removed = getattr(cls, "REMOVED", {}).get(key)
                if removed:
                    raise ValueError(f"{key!r} is gone: {removed}")
                hint = difflib.get_close_matches(str(key), hints, n=1)
                raise ValueError(f"unknown key {key!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                                 + f"; see {cls.__name__} for the keys")
        return cls(**{key: typed(key, value, hints[key]) for key, value in values.items()})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{source}: {err}") from None


def typed(name: str, value, hint):
    """`value` if it is what the field type `hint` allows, as a recipe writes it (True is no
    number, an int is a float), elements included; a float written as a string becomes a number
    (YAML reads 1e-5, without a dot, as a string)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = typing.get_args(hint) if union else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ValueError(f"{name} must not be empty (null)")
    for option in options:
        kind, args = typing.get_origin(option) or option, typing.get_args(option)
        if kind is Any:
            return value
        if kind is typing.Literal:
            if value in args:
                return value
            continue
        if kind is float and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"{name} must be a number, got {value!r}") from None
        if isinstance(value, bool) and kind is not bool or not isinstance(value, (int, float) if kind is float else kind):
            continue
        if kind is list and args:
            return [typed(f"{name}[{i}]", v, args[0]) for i, v in enumerate(value)]
        if kind is dict and args:
            return {typed(f"a key of {name}", k, args[0]): typed(f"{name}.{k}", v, args[1]) for k, v in value.items()}
        return value
    want = " or ".join("a number" if o is float else str(o) if typing.get_origin(o) else o.__name__
                       for o in options if o is not type(None))
    raise ValueError(f"{name} must be {want}{' or null' if union and type(None) in options else ''}, "
                     f"got {type(value).__name__} {value!r}")
