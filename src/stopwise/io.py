"""Files: JSON and JSONL records (read with errors that name the file and line; written
atomically, so that a killed writer leaves the old file), trainer checkpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path


class RecordsError(ValueError):
    """A JSON / JSONL file that cannot be read as records; the message names file and line."""


def read_records(path: str | Path, wrappers: tuple[str, ...] = ()) -> list[tuple[int | None, object]]:
    """(line, record) for each record of a JSON list, of a JSON object's list under one of the
    `wrappers` keys (line None: not tracked there), of a single JSON object, or of JSONL (one
    record per line, blank lines skipped); lines 1-based. Which one is read from the text, not
    the file's name. Invalid JSON is a `RecordsError` "{path}:{line}: invalid JSON (...)"."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    body = text.lstrip()
    if body.startswith("["):
        return _json_list(path, text)
    if body.startswith("{"):
        try:
            whole = json.loads(text)
        except json.JSONDecodeError:
            whole = None  # JSONL (or broken: the line loop below says where)
        if isinstance(whole, dict):
            key = next((k for k in wrappers if isinstance(whole.get(k), list)), None)
            return [(None, r) for r in whole[key]] if key else [(text.count("\n", 0, len(text) - len(body)) + 1, whole)]
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append((lineno, json.loads(line)))
            except json.JSONDecodeError as err:
                raise RecordsError(f"{path}:{lineno}: invalid JSON ({err.msg}, column {err.colno})") from None
    return out


def holds_json_list(path: str | Path) -> bool:
    """Whether the file's text starts with `[` (its records are then counted by index)."""
    with open(path, encoding="utf-8") as f:
        while chunk := f.read(4096):
            if chunk.strip():
                return chunk.lstrip().startswith("[")
    return False


def _json_list(path: Path, text: str) -> list[tuple[int, object]]:
    """(line, element) of the JSON list `text` holds."""
    decoder, i, n, out = json.JSONDecoder(), text.index("[") + 1, len(text), []

    def skip(j: int) -> int:
        while j < n and text[j] in " \t\r\n":
            j += 1
        return j

    def fail(pos: int, msg: str):
        raise RecordsError(f"{path}:{text.count(chr(10), 0, pos) + 1}: invalid JSON ({msg})")

    i = skip(i)
    if i < n and text[i] == "]":
        return out
    while True:
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as err:
            fail(err.pos, err.msg)
        out.append((text.count("\n", 0, i) + 1, obj))
        i = skip(end)
        if i < n and text[i] == "]":
            if text[i + 1:].strip():
                fail(skip(i + 1), "extra data after the list")
            return out
        if i >= n or text[i] != ",":
            fail(i, "expected ',' or ']'")
        i = skip(i + 1)


def write_json(path: str | Path, obj) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def write_jsonl(path: str | Path, records) -> Path:
    """Write one JSON object per line, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)
    return path


def last_checkpoint(out: str | Path) -> str | None:
    """The newest `checkpoint-N` in `out` that holds a trainer state, or None: a checkpoint
    killed before the trainer wrote its state is not one to resume from (transformers'
    `get_last_checkpoint` would take it)."""
    out = Path(out)
    if not out.is_dir():
        return None
    found = [(int(p.name.split("-", 1)[1]), p) for p in out.glob("checkpoint-*")
             if p.name.split("-", 1)[1].isdigit() and (p / "trainer_state.json").exists()]
    return str(max(found)[1]) if found else None
