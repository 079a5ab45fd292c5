"""Files: JSON and JSONL with atomic writes (a killed writer leaves the old file), trainer
checkpoints."""

from __future__ import annotations

import json
import os
from pathlib import Path


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
