"""A run directory: config.json, samples.jsonl (appended and flushed per sample), summary.json.

Resuming reads samples.jsonl back; a sample is identified by (problem_id, sample_index), so a
killed run loses at most the batch in flight and never duplicates a sample. A torn last line
(the process died mid-write) is dropped and rewritten; any other malformed line is an error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class RunConfigMismatch(ValueError):
    """The run directory holds a run made with different settings."""


def write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def write_jsonl(path: str | Path, records: list[dict]) -> Path:
    """Write one JSON object per line, atomically (a killed writer leaves the old file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    tmp.replace(path)
    return path


def read_samples(path: Path) -> list[dict]:
    if not path.exists():
        return []
    lines = path.read_text().split("\n")
    samples = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            samples.append(json.loads(line))
        except json.JSONDecodeError as err:
            is_torn_tail = number == len(lines) or all(not x.strip() for x in lines[number:])
            if is_torn_tail:
                continue
            raise ValueError(f"{path}:{number}: malformed sample line ({err.msg})") from err
    return samples


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_path = self.path / "config.json"
        self.samples_path = self.path / "samples.jsonl"
        self.summary_path = self.path / "summary.json"

    def open(self, identity: dict, config: dict, overwrite: bool = False) -> list[dict]:
        """Prepare the directory for a run with `identity`; return the samples already made."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.config_path.exists() and not overwrite:
            old = json.loads(self.config_path.read_text()).get("identity")
            if old != identity:
                diff = sorted(k for k in set(old or {}) | set(identity) if (old or {}).get(k) != identity.get(k))
                raise RunConfigMismatch(
                    f"{self.path} holds a run with other settings (differing: {', '.join(diff)}); "
                    "use another --out or pass --overwrite"
                )
        if overwrite:
            for p in (self.samples_path, self.summary_path):
                p.unlink(missing_ok=True)
        write_json(self.config_path, {**config, "identity": identity})
        samples = read_samples(self.samples_path)
        self.rewrite(samples)
        return samples

    def rewrite(self, samples: list[dict]) -> None:
        """Replace samples.jsonl atomically (also drops a torn tail before appending)."""
        if self.samples_path.exists():
            tmp = self.samples_path.with_suffix(".jsonl.tmp")
            with tmp.open("w") as f:
                for s in samples:
                    f.write(json.dumps(s) + "\n")
            os.replace(tmp, self.samples_path)

    def append(self, samples: list[dict]) -> None:
        with self.samples_path.open("a") as f:
            for s in samples:
                f.write(json.dumps(s) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def samples(self) -> list[dict]:
        return read_samples(self.samples_path)

    def config(self) -> dict:
        if not self.config_path.exists():
            raise FileNotFoundError(f"{self.path} is not a run directory (no config.json)")
        return json.loads(self.config_path.read_text())

    def write_summary(self, summary: dict) -> None:
        write_json(self.summary_path, summary)
