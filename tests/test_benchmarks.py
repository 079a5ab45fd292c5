"""Benchmark loading: the five benchmarks, any JSON/JSONL file, and clear errors."""

from __future__ import annotations

import json
import re

import pytest

from stopwise.benchmarks import (
    BENCHMARKS,
    REPO_ROOT,
    BenchmarkError,
    Problem,
    load_benchmark,
    normalize_answer,
    resolve_data_dir,
)

COUNTS = {"math500": 500, "aime24": 30, "amc23": 40, "olympiadbench": 675, "gsm8k": 1319}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------
# the five benchmarks


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_loads_with_its_count(data_dir, name):
    problems = load_benchmark(name, data_dir=data_dir)
    assert len(problems) == COUNTS[name]
    assert all(isinstance(p, Problem) for p in problems)
    ids = [p.id for p in problems]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith(f"{name}/") for i in ids)
    for p in problems:
        assert p.problem.strip() == p.problem and p.problem
        parts = p.answer if isinstance(p.answer, list) else [p.answer]
        assert parts and all(isinstance(a, str) and a.strip() for a in parts)
        assert p.meta["source"].endswith(f"{name}.jsonl")


def test_math500_fields_and_ids(data_dir):
    problems = load_benchmark("math500", data_dir=data_dir)
    first = problems[0]
    assert first.id == "math500/test/precalculus/807.json"
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert first.problem.startswith("Convert the point $(0,3)$")
    assert "\\boxed" in first.meta["solution"] and first.meta["level"] == 2
    # an escaped dollar in an answer is part of it, not a math delimiter
    assert "\\$32,\\!348" in {p.answer for p in problems}


def test_aime24_answers_are_three_digit_strings(data_dir):
    problems = load_benchmark("aime24", data_dir=data_dir)
    assert problems[0].id == "aime24/60" and problems[0].answer == "204"
    assert all(re.fullmatch(r"\d{3}", p.answer) for p in problems)  # "025" keeps its zero


def test_amc23_float_answers_become_integers(data_dir):
    problems = load_benchmark("amc23", data_dir=data_dir)
    assert problems[0].answer == "27"  # 27.0 in the file
    assert all(re.fullmatch(r"-?\d+", p.answer) for p in problems)
    assert "-1" in {p.answer for p in problems}


def test_olympiadbench_answers_are_normalised(data_dir):
    problems = load_benchmark("olympiadbench", data_dir=data_dir)
    by_id = {p.id: p for p in problems}
    assert problems[0].id == "olympiadbench/1606" and problems[0].answer == "2"
    # no unescaped math delimiters left in any answer
    assert not [p.answer for p in problems if re.search(r"(?<!\\)\$", str(p.answer))]
    assert by_id["olympiadbench/1610"].answer == "\\frac{1}{2 n+2}"  # "$\frac{1}{2 n+2}$"
    multi = [p for p in problems if p.meta["is_multiple_answer"]]
    assert len(multi) == 94
    answers = {p.answer for p in multi}
    assert "69,84" in answers  # "$69$,$84$": the separate math segments joined
    assert "(6,3),(9,3),(9,5),(54,5)" in answers
    assert {"unit", "answer_type", "error", "subfield"} <= set(problems[0].meta)


def test_gsm8k_answer_after_hashes_without_commas(data_dir):
    problems = load_benchmark("gsm8k", data_dir=data_dir)
    assert problems[0].id == "gsm8k/0" and problems[0].answer == "18"
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", p.answer) for p in problems)
    raw = [json.loads(line) for line in (data_dir / "benchmarks" / "gsm8k.jsonl").open()]
    i = next(i for i, r in enumerate(raw) if r["answer"].rsplit("####", 1)[1].strip() == "2,125")
    assert problems[i].answer == "2125"
    assert problems[0].meta["solution"].endswith("#### 18")  # the worked solution is kept


def test_limit(data_dir):
    problems = load_benchmark("math500", data_dir=data_dir, limit=7)
    assert [p.id for p in problems] == [p.id for p in load_benchmark("math500", data_dir=data_dir)[:7]]
    for bad in (0, -3, 2.5, "3", True):
        with pytest.raises(BenchmarkError, match="limit must be a positive integer"):
            load_benchmark("math500", data_dir=data_dir, limit=bad)


def test_data_dir_resolution(data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("STOPWISE_DATA", str(data_dir))
    assert resolve_data_dir() == data_dir
    assert len(load_benchmark("amc23")) == 40  # from $STOPWISE_DATA
    assert resolve_data_dir(tmp_path) == tmp_path  # the argument wins
    # the benchmarks folder itself works as a data dir too; names are case/dash-insensitive
    assert len(load_benchmark("AIME-24", data_dir=data_dir / "benchmarks")) == 30
    monkeypatch.delenv("STOPWISE_DATA")
    monkeypatch.chdir(tmp_path)
    next_to_repo = (REPO_ROOT / ".." / "shared" / "data").resolve()
    if next_to_repo.is_dir():
        assert resolve_data_dir() == next_to_repo  # ../shared/data next to the repository


def test_path_to_a_known_file_uses_its_stem_as_prefix(data_dir):
    problems = load_benchmark(data_dir / "benchmarks" / "gsm8k.jsonl", limit=2)
    assert [p.id for p in problems] == ["gsm8k/0", "gsm8k/1"]


# ---------------------------------------------------------------------------------------
# any JSON / JSONL file


def test_jsonl_with_other_field_names(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [
        {"idx": 7, "question": "1+1?", "final_answer": ["$2$"]},
        {"idx": 8, "question": "Roots of x^2=1?", "final_answer": ["$1$", "$-1$"]},
        {"idx": 9, "question": "Half?", "gtruth_answer": 0.5},
    ])
    problems = load_benchmark(str(path))
    assert [p.id for p in problems] == ["mine/7", "mine/8", "mine/9"]
    assert [p.answer for p in problems] == ["2", ["1", "-1"], "0.5"]
    assert problems[0].meta["index"] == 0


def test_json_list_object_wrapper_and_jsonl_named_json(tmp_path):
    recs = [{"prompt": "p1", "answer": "a"}, {"prompt": "p2", "answer": 3}]
    (tmp_path / "list.json").write_text(json.dumps(recs))
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": recs}))
    write_jsonl(tmp_path / "lines.json", recs)
    for name in ("list.json", "wrapped.json", "lines.json"):
        problems = load_benchmark(tmp_path / name)
        assert [(p.id, p.problem, p.answer) for p in problems] == [
            (f"{name[:-5]}/0", "p1", "a"), (f"{name[:-5]}/1", "p2", "3")]


def test_fields_named_by_the_caller_and_boxed_solution_fallback(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [
        {"key": "k1", "text": "What?", "gold": "4", "answer": "ignored"},
    ])
    p = load_benchmark(path, problem_field="text", answer_field="gold", id_field="key")[0]
    assert (p.id, p.problem, p.answer) == ("x/k1", "What?", "4")
    assert p.meta["answer"] == "ignored"
    path = write_jsonl(tmp_path / "hub_like.jsonl", [
        {"problem": "Find it.", "solution": "So it is $\\boxed{\\frac{1}{2}}$."}])
    assert load_benchmark(path)[0].answer == "\\frac{1}{2}"


def test_normalize_answer():
    assert normalize_answer(27.0) == "27"
    assert normalize_answer(2.5) == "2.5"
    assert normalize_answer(12) == "12"
    assert normalize_answer("Janet... #### 1,234") == "1234"
    assert normalize_answer(["$\\frac{1}{2}$"]) == "\\frac{1}{2}"
    assert normalize_answer(["$1$", "$2$"]) == ["1", "2"]
    assert normalize_answer("$(-\\infty, 0) \\cup\\{1\\}$.") == "(-\\infty, 0) \\cup\\{1\\}"
    assert normalize_answer("\\$18.90") == "\\$18.90"
    assert normalize_answer("") is None and normalize_answer(None) is None and normalize_answer([]) is None


# ---------------------------------------------------------------------------------------
# bad input


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(BenchmarkError, match=r"not found: .*nope\.jsonl"):
        load_benchmark(tmp_path / "nope.jsonl")
    (tmp_path / "adir.json").mkdir()
    with pytest.raises(BenchmarkError, match=r"directory.*adir\.json"):
        load_benchmark(tmp_path / "adir.json")


def test_unreadable_file(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"problem": "caf\xe9", "answer": "1"}\n')
    with pytest.raises(BenchmarkError, match=r"cannot read benchmark file .*latin\.jsonl"):
        load_benchmark(path)


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "a", "answer": "1"}\n\n{"problem": "b", "answer": \n')
    with pytest.raises(BenchmarkError) as err:
        load_benchmark(path)
    assert "bad.jsonl:3: invalid JSON" in str(err.value)
    path.write_text('{"problem": "a", "answer": "1"}\n[1, 2]\n')
    with pytest.raises(BenchmarkError, match=r"bad\.jsonl: line 2 is a list"):
        load_benchmark(path)


def test_malformed_json_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[{"problem": "a", "answer": "1"},\n {"problem": }]')
    with pytest.raises(BenchmarkError, match=r"bad\.json:2: invalid JSON"):
        load_benchmark(path)
    path.write_text('{"nothing": 1}')
    with pytest.raises(BenchmarkError, match=r"bad\.json: expected a list of records"):
        load_benchmark(path)
    path.write_text('[{"problem": "a", "answer": "1"}, "b"]')
    with pytest.raises(BenchmarkError, match=r"bad\.json: record 1 is a str"):
        load_benchmark(path)


def test_record_without_problem_or_answer(tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", [{"problem": "a", "answer": "1"}, {"text": "b", "answer": "2"}])
    with pytest.raises(BenchmarkError) as err:
        load_benchmark(path)
    msg = str(err.value)
    assert "f.jsonl" in msg and "line 2" in msg and "problem" in msg and "['answer', 'text']" in msg

    path = write_jsonl(tmp_path / "g.jsonl", [{"problem": "a", "answer": "1"}, {"problem": "b", "solution": "no box"}])
    with pytest.raises(BenchmarkError) as err:
        load_benchmark(path)
    msg = str(err.value)
    assert "g.jsonl" in msg and "line 2" in msg and "answer field" in msg and "['problem', 'solution']" in msg

    path = write_jsonl(tmp_path / "h.jsonl", [{"problem": "a", "answer": ""}])
    with pytest.raises(BenchmarkError, match=r"h\.jsonl, line 1: the answer field 'answer' is empty"):
        load_benchmark(path)
    path = write_jsonl(tmp_path / "i.jsonl", [{"problem": "a", "answer": "1"}])
    with pytest.raises(BenchmarkError, match=r"i\.jsonl, line 1: no field 'question'.*\['answer', 'problem'\]"):
        load_benchmark(path, problem_field="question")
    with pytest.raises(BenchmarkError, match=r"i\.jsonl, line 1: no field 'gold'"):
        load_benchmark(path, answer_field="gold")
    with pytest.raises(BenchmarkError, match=r"i\.jsonl, line 1: no id field 'uid'"):
        load_benchmark(path, id_field="uid")


def test_empty_benchmark_and_duplicate_ids(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(BenchmarkError, match=r"empty\.jsonl: the benchmark is empty"):
        load_benchmark(tmp_path / "empty.jsonl")
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(BenchmarkError, match=r"empty\.json: the benchmark is empty"):
        load_benchmark(tmp_path / "empty.json")
    path = write_jsonl(tmp_path / "dup.jsonl", [{"id": 1, "problem": "a", "answer": "1"},
                                               {"id": 1, "problem": "b", "answer": "2"}])
    with pytest.raises(BenchmarkError, match=r"duplicate id 'dup/1' \(line 1 and line 2\)"):
        load_benchmark(path)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(BenchmarkError) as err:
        load_benchmark("math5000")
    msg = str(err.value)
    assert "math5000" in msg and all(n in msg for n in BENCHMARKS)
    assert isinstance(err.value, ValueError)
    with pytest.raises(BenchmarkError, match="empty name"):
        load_benchmark("  ")


def test_known_name_without_local_copy_goes_to_the_hub(tmp_path, monkeypatch):
    import datasets

    calls = []

    def offline(repo, config=None, split=None, **kw):
        calls.append((repo, config, split))
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(BenchmarkError) as err:
        load_benchmark("aime24", data_dir=tmp_path)
    msg = str(err.value)
    assert calls == [("HuggingFaceH4/aime_2024", None, "train"), ("math-ai/aime24", None, "test")]
    assert "HuggingFaceH4/aime_2024" in msg and "math-ai/aime24" in msg and "offline" in msg
    assert str(tmp_path / "benchmarks" / "aime24.jsonl") in msg


def test_hub_records_are_normalised_like_files(tmp_path, monkeypatch):
    import datasets

    rows = {
        "Hothan/OlympiadBench": [
            {"id": 1, "question": "Q1", "context": None, "final_answer": ["$\\frac{1}{2}$"], "is_multiple_answer": False},
            {"id": 2, "question": "Q2", "context": "Given a game.", "final_answer": ["$3$", "$-3$"], "is_multiple_answer": True},
        ],
        "openai/gsm8k": [{"question": "Q", "answer": "Work.\n#### 1,000"}],
    }

    def fake(repo, config=None, split=None, **kw):
        return rows[repo]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    ob = load_benchmark("olympiadbench", data_dir=tmp_path)
    assert [(p.id, p.answer) for p in ob] == [("olympiadbench/1", "\\frac{1}{2}"), ("olympiadbench/2", ["3", "-3"])]
    assert ob[1].problem == "Given a game.\n\nQ2"
    assert ob[0].meta["source"] == "hub:Hothan/OlympiadBench[OE_TO_maths_en_COMP]:train"
    gsm = load_benchmark("gsm8k", data_dir=tmp_path)
    assert (gsm[0].id, gsm[0].answer) == ("gsm8k/0", "1000")


def test_one_reader_for_json_and_jsonl(tmp_path):
    """`io.read_records`, the reader of benchmarks, traces, TLDR problems and run samples: the
    form comes from the text, lines are counted in each form, bad JSON names file and line."""
    from stopwise.io import RecordsError, read_records

    cases = {
        "a.json": ('[{"x": 1},\n {"x": 2}]', [(1, {"x": 1}), (2, {"x": 2})]),
        "b.jsonl": ('{"x": 1}\n\n{"x": 2}\n', [(1, {"x": 1}), (3, {"x": 2})]),
        "c.json": ('{"rows": [{"x": 1}, {"x": 2}]}', [(None, {"x": 1}), (None, {"x": 2})]),
        "d.json": ('\n{"x": 1}', [(2, {"x": 1})]),
        "e.txt": ('[]', []),
    }
    for name, (text, want) in cases.items():
        (tmp_path / name).write_text(text)
        assert read_records(tmp_path / name, ("rows",)) == want, name
    for name, text, line in (("f.json", '[{"x": 1},\n {"x": }]', 2), ("g.jsonl", '{"x": 1}\n{oops\n', 2),
                             ("h.json", '[1, 2]\n\nx', 3), ("i.json", '[1, 2', 1)):
        (tmp_path / name).write_text(text)
        with pytest.raises(RecordsError, match=rf"{name}:{line}: invalid JSON"):
            read_records(tmp_path / name)
