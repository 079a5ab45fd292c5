"""Evaluation benchmarks: MATH500, AIME24, AMC23, OlympiadBench, GSM8K, or any JSON/JSONL file.

    load_benchmark(name_or_path, data_dir=None, limit=None,
                   problem_field=None, answer_field=None, id_field=None) -> list[Problem]

Where a known benchmark is read from (first that exists):

1. `<data_dir>/benchmarks/<name>.jsonl` (or `<data_dir>/<name>.jsonl`), where `data_dir` is
   the argument, else the environment variable `STOPWISE_DATA`, else a `../shared/data`
   next to the current directory or to the repository;
2. the Hugging Face hub, through `datasets.load_dataset` (network or the local datasets
   cache; see `HUB_SOURCES`, tried in order):

   | name          | hub dataset (config, split)                                            |
   |---------------|------------------------------------------------------------------------|
   | math500       | HuggingFaceH4/MATH-500 (test)                                          |
   | aime24        | HuggingFaceH4/aime_2024 (train), then math-ai/aime24 (test)            |
   | amc23         | math-ai/amc23 (test)                                                   |
   | olympiadbench | Hothan/OlympiadBench (OE_TO_maths_en_COMP, train): 675 problems        |
   | gsm8k         | openai/gsm8k (main, test)                                              |

   Hub records go through the same normalisation as local files.

Any other argument is a path to a JSON file (a list of records, or an object holding one
under "data"/"examples"/"problems"/"rows"/"records") or a JSONL file (one record a line).

Fields are detected, or named by the caller:

* problem: `problem`, `question`, `prompt`, `input`
* answer: `answer`, `final_answer`, `gtruth_answer`, `expected_answer`, `target`; as a last
  resort the last `\\boxed{}` of a `solution`
* id: `id`, `unique_id`, `idx`, `problem_id`; else the record's position (0-based). The
  `Problem.id` is "<benchmark>/<id>", the benchmark being the known name or the file stem.

Answers are normalised: a float with an integer value loses its ".0" (AMC23: 27.0 -> "27");
GSM8K's "... #### 1,234" becomes "1234"; math delimiters around an answer are removed
("$\\frac{1}{2}$" -> "\\frac{1}{2}", OlympiadBench "$69$,$84$" -> "69,84"; an escaped
"\\$" stays); a list answer of one element becomes that element, a longer list stays a
list (every part must then be matched, see `stopwise.grading`).
Every other field of a record is kept in `Problem.meta` (e.g. `solution`, `level`,
`subject`, OlympiadBench's `is_multiple_answer`, `unit`, `answer_type`), with `source`
(the file or hub dataset) and `index` (the record's position).

Bad input raises `BenchmarkError` (a ValueError) that names the culprit: the file, the
line (JSONL) or record (JSON), the field.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stopwise import io
from stopwise.grading.extract import clean_answer, find_boxed

__all__ = [
    "BENCHMARKS",
    "HUB_SOURCES",
    "BenchmarkError",
    "Problem",
    "load_benchmark",
    "load_records",
    "normalize_answer",
    "resolve_data_dir",
]

BENCHMARKS = ("math500", "aime24", "amc23", "olympiadbench", "gsm8k")

# name -> [(hub dataset, config, split), ...] tried in order when no local copy exists
HUB_SOURCES: dict[str, list[tuple[str, str | None, str]]] = {
    "math500": [("HuggingFaceH4/MATH-500", None, "test")],
    "aime24": [("HuggingFaceH4/aime_2024", None, "train"), ("math-ai/aime24", None, "test")],
    "amc23": [("math-ai/amc23", None, "test")],
    "olympiadbench": [("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train")],
    "gsm8k": [("openai/gsm8k", "main", "test")],
}

_ALIASES = {
    "math500": "math500", "math": "math500", "aime24": "aime24", "aime2024": "aime24",
    "amc23": "amc23", "amc2023": "amc23", "olympiadbench": "olympiadbench",
    "olympiad": "olympiadbench", "gsm8k": "gsm8k",
}

PROBLEM_FIELDS = ("problem", "question", "prompt", "input")
ANSWER_FIELDS = ("answer", "final_answer", "gtruth_answer", "expected_answer", "target")
ID_FIELDS = ("id", "unique_id", "idx", "problem_id")
_WRAPPER_KEYS = ("data", "examples", "problems", "rows", "records")

REPO_ROOT = Path(__file__).resolve().parents[3]


class BenchmarkError(ValueError):
    """A benchmark cannot be loaded; the message says which file, line and field."""


@dataclass
class Problem:
    """One benchmark problem. A list `answer` means every part must be matched."""

    id: str
    problem: str
    answer: str | list[str]
    meta: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# answers

_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def _strip_math_delimiters(text: str) -> str:
    """'$x$' -> 'x'; '$69$,$84$' -> '69,84'; '\\$18.90' is left alone."""
    s = text.strip()
    if not s.startswith("$"):
        return s
    if s.endswith("$."):  # "$(-\\infty, 0) \\cup\\{1\\}$."
        s = s[:-1]
    return _UNESCAPED_DOLLAR.sub("", s).strip()


def normalize_answer(value: Any) -> str | list[str] | None:
    """A gold answer as a clean string, or a list of them (None when empty)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        parts = [normalize_answer(v) for v in value]
        if any(isinstance(p, list) for p in parts):
            return None
        parts = [p for p in parts if p]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else parts  # type: ignore[return-value]
    if not isinstance(value, str):
        return None
    s = value.strip()
    if "####" in s:  # GSM8K: the solution, then "#### <answer>"
        s = s.rsplit("####", 1)[1].strip()
        if _THOUSANDS.fullmatch(s):
            s = s.replace(",", "")
    s = _strip_math_delimiters(s)
    return s or None


# ---------------------------------------------------------------------------------------
# reading files


def _read_records(path: Path) -> list[tuple[str, dict]]:
    """(where, record) pairs; `where` is 'line N' (JSONL) or 'record N' (JSON)."""
    if not path.exists():
        raise BenchmarkError(f"benchmark file not found: {path}")
    if path.is_dir():
        raise BenchmarkError(f"benchmark path is a directory, not a JSON/JSONL file: {path}")
    try:
        pairs = io.read_records(path, _WRAPPER_KEYS)
        listed = io.holds_json_list(path)
    except (OSError, UnicodeDecodeError) as err:
        raise BenchmarkError(f"cannot read benchmark file {path}: {err}") from err
    except io.RecordsError as err:
        raise BenchmarkError(str(err)) from None
    if len(pairs) == 1 and pairs[0][0] is not None and isinstance(pairs[0][1], dict) and not listed \
            and not any(k in pairs[0][1] for k in PROBLEM_FIELDS) and path.suffix.lower() != ".jsonl":
        raise BenchmarkError(
            f"{path}: expected a list of records (or an object with one of {list(_WRAPPER_KEYS)} "
            f"holding it), got an object with keys {sorted(pairs[0][1])[:10]}")
    out: list[tuple[str, dict]] = []
    for k, (line, rec) in enumerate(pairs):
        where = f"record {k}" if listed or line is None else f"line {line}"
        if not isinstance(rec, dict):
            raise BenchmarkError(f"{path}: {where} is a {type(rec).__name__}, expected an object")
        out.append((where, rec))
    return out


def load_records(path: str | os.PathLike) -> list[dict]:
    """The raw records of a JSON or JSONL file (BenchmarkError on bad input)."""
    return [rec for _, rec in _read_records(Path(path))]


# ---------------------------------------------------------------------------------------
# records -> problems


def _pick(rec: dict, wanted: str | None, candidates: tuple[str, ...]) -> str | None:
    if wanted is not None:
        return wanted if wanted in rec else None
    present = [k for k in candidates if k in rec]
    return next((k for k in present if rec[k] not in (None, "", [])), present[0] if present else None)


def _boxed_from_solution(rec: dict) -> str | None:
    sol = rec.get("solution")
    if isinstance(sol, list):
        sol = "\n".join(s for s in sol if isinstance(s, str))
    if not isinstance(sol, str):
        return None

    boxes = find_boxed(sol)
    return (clean_answer(boxes[-1]) or boxes[-1]) if boxes else None


def _to_problems(
    items: list[tuple[str, dict]],
    source: str,
    prefix: str,
    problem_field: str | None,
    answer_field: str | None,
    id_field: str | None,
) -> list[Problem]:
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for index, (where, rec) in enumerate(items):
        fields = sorted(rec)
        pkey = _pick(rec, problem_field, PROBLEM_FIELDS)
        if pkey is None:
            asked = f"field {problem_field!r}" if problem_field else f"a problem field (one of {list(PROBLEM_FIELDS)})"
            raise BenchmarkError(f"{source}, {where}: no {asked}; the record has fields {fields}")
        text = rec[pkey]
        if not isinstance(text, str) or not text.strip():
            raise BenchmarkError(
                f"{source}, {where}: the problem field {pkey!r} is empty or not a string ({text!r:.60})"
            )
        context = rec.get("context")
        if prefix == "olympiadbench" and isinstance(context, str) and context.strip():
            text = f"{context.strip()}\n\n{text.strip()}"  # OlympiadBench: shared context first
        akey = _pick(rec, answer_field, ANSWER_FIELDS)
        if akey is not None:
            answer = normalize_answer(rec[akey])
            if answer is None and answer_field is None and _boxed_from_solution(rec) is not None:
                answer, akey = _boxed_from_solution(rec), "solution"
            if answer is None:
                raise BenchmarkError(
                    f"{source}, {where}: the answer field {akey!r} is empty or not a string, "
                    f"number or list of them ({rec[akey]!r:.60})"
                )
        else:
            answer = None if answer_field else _boxed_from_solution(rec)
            if answer is None:
                asked = (
                    f"field {answer_field!r}" if answer_field
                    else f"answer field (one of {list(ANSWER_FIELDS)}, or a 'solution' with a \\boxed{{}} answer)"
                )
                raise BenchmarkError(f"{source}, {where}: no {asked}; the record has fields {fields}")
            akey = "solution"
        ikey = _pick(rec, id_field, ID_FIELDS)
        if id_field is not None and ikey is None:
            raise BenchmarkError(f"{source}, {where}: no id field {id_field!r}; the record has fields {fields}")
        raw_id = rec[ikey] if ikey is not None else None
        if raw_id is None or raw_id == "" or isinstance(raw_id, (dict, list)):
            if id_field is not None:
                raise BenchmarkError(f"{source}, {where}: the id field {id_field!r} is empty or not a scalar")
            raw_id = index
        pid = f"{prefix}/{raw_id}"
        if pid in seen:
            raise BenchmarkError(
                f"{source}: duplicate id {pid!r} ({seen[pid]} and {where}); name a unique field with id_field"
            )
        seen[pid] = where
        meta = {k: v for k, v in rec.items() if k not in (pkey, akey) or k == "solution"}
        if isinstance(rec.get(akey), str) and "####" in rec[akey] and "solution" not in meta:
            meta["solution"] = rec[akey]  # GSM8K: the worked solution before "#### N"
        meta["source"] = source
        meta["index"] = index
        problems.append(Problem(id=pid, problem=text.strip(), answer=answer, meta=meta))
    if not problems:
        raise BenchmarkError(f"{source}: the benchmark is empty (no records)")
    return problems


# ---------------------------------------------------------------------------------------
# locating data


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The data folder: the argument, else $STOPWISE_DATA, else an existing ../shared/data
    next to the current directory or to the repository; None if there is none."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("STOPWISE_DATA")
    if env:
        return Path(env).expanduser()
    for base in (Path.cwd(), REPO_ROOT):
        cand = (base / ".." / "shared" / "data").resolve()
        if cand.is_dir():
            return cand
    return None


def _canonical(name: str) -> str | None:
    return _ALIASES.get(re.sub(r"[-_ ]", "", name.strip().lower()))


def _local_copy(name: str, data_dir: Path | None) -> Path | None:
    if data_dir is None:
        return None
    for cand in (data_dir / "benchmarks" / f"{name}.jsonl", data_dir / f"{name}.jsonl",
                 data_dir / "benchmarks" / f"{name}.json", data_dir / f"{name}.json"):
        if cand.is_file():
            return cand
    return None


def _load_from_hub(name: str) -> tuple[list[tuple[str, dict]], str]:
    """Records of a known benchmark from the Hugging Face hub (or the datasets cache)."""
    errors = []
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - a dependency
        raise BenchmarkError(f"no local copy of {name!r} and the `datasets` package is missing") from err
    for repo, config, split in HUB_SOURCES[name]:
        label = f"hub:{repo}" + (f"[{config}]" if config else "") + f":{split}"
        try:
            ds = datasets.load_dataset(repo, config, split=split) if config else datasets.load_dataset(repo, split=split)
            rows = [dict(r) for r in ds]
        except Exception as err:  # noqa: BLE001 - offline, gated, renamed...: try the next source
            errors.append(f"{label}: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}")
            continue
        return [(f"record {i}", r) for i, r in enumerate(rows)], label
    raise BenchmarkError(
        f"no local copy of benchmark {name!r} and the hub copy could not be loaded ("
        + "; ".join(errors) + ")"
    )


def load_benchmark(
    name_or_path: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    problem_field: str | None = None,
    answer_field: str | None = None,
    id_field: str | None = None,
) -> list[Problem]:
    """Load a benchmark by name (math500, aime24, amc23, olympiadbench, gsm8k) or path.

    See the module docstring for where known benchmarks come from, the field detection and
    the answer normalisation. `limit`: the first N problems (N > 0).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0):
        raise BenchmarkError(f"limit must be a positive integer, got {limit!r}")
    raw = os.fspath(name_or_path)
    if not raw.strip():
        raise BenchmarkError("no benchmark given (empty name or path)")
    path = Path(raw).expanduser()
    name = _canonical(raw)
    if path.is_file() or (name is None and (path.suffix or os.sep in raw or "/" in raw or path.exists())):
        items = _read_records(path)
        source, prefix = str(path), _canonical(path.stem) or path.stem
    elif name is not None:
        local = _local_copy(name, resolve_data_dir(data_dir))
        if local is not None:
            items, source = _read_records(local), str(local)
        else:
            try:
                items, source = _load_from_hub(name)
            except BenchmarkError as err:
                where = resolve_data_dir(data_dir)
                looked = f"{where / 'benchmarks' / (name + '.jsonl')}" if where else "no data dir (set STOPWISE_DATA or pass data_dir)"
                raise BenchmarkError(f"{err}; looked locally for: {looked}") from err
        prefix = name
    else:
        raise BenchmarkError(
            f"unknown benchmark {raw!r}: not a file, and not one of the known names "
            f"{', '.join(BENCHMARKS)}"
        )
    problems = _to_problems(items, source, prefix, problem_field, answer_field, id_field)
    return problems[:limit] if limit is not None else problems
