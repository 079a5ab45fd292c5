"""`stopwise data import`: public long-CoT data sets (hand-made records in each data set's own
fields, as their dataset cards give them) as SFT traces, with counted drops and clear errors."""

import json

import pytest

from stopwise.cli import main
from stopwise.supervision import load_traces
from stopwise.supervision.importers import (
    BAD_GOLD,
    EMPTY_ANSWER,
    EMPTY_THINKING,
    FLAGGED_WRONG,
    GRADED_WRONG,
    INCOMPLETE,
    NO_GOLD,
    OVER_CAP,
    ImportConfig,
    ImportFormatError,
    import_traces,
)
from stopwise.supervision.traces import TraceFormat
from stopwise.thinking import S1_EOT, S1_THINK_START

Q = "What is 3 * 4?"

S1K = {"solution": "Multiply: $3 \\cdot 4 = \\boxed{12}$.", "question": Q, "cot_type": "math",
       "source_type": "qfq/openaimath/Algebra", "metadata": "{}", "cot": None,
       "thinking_trajectories": ["3 * 4 means three fours.", "4 + 4 + 4 = 12."],
       "attempt": "The product is $\\boxed{12}$."}
S1K_11 = {"solution": "12", "question": Q, "cot_type": "math", "source_type": "s", "metadata": "{}",
          "gemini_thinking_trajectory": "Three fours make 12.", "gemini_attempt": "Answer: 13",
          "deepseek_thinking_trajectory": "Okay, 3 * 4 = 12.", "deepseek_attempt": "**Answer** \\boxed{12}",
          "gemini_grade": "No", "deepseek_grade": "Yes"}
OPENTHOUGHTS = {
    "system": "Your role as an assistant involves thoroughly exploring questions through a systematic "
              "long thinking process ... <|begin_of_thought|> ... <|begin_of_solution|> ...",
    "conversations": [
        {"from": "user", "value": "Return your final response within \\boxed{}. " + Q},
        {"from": "assistant", "value": "<|begin_of_thought|>\n\nThree fours: 12.\n\n<|end_of_thought|>\n\n"
                                       "<|begin_of_solution|>\n\nThe product is \\boxed{12}.\n\n<|end_of_solution|>"},
    ],
}
OPENR1 = {"problem": Q, "solution": "3 * 4 = 12", "answer": "12", "problem_type": "Algebra",
          "question_type": "math-word-problem", "source": "olympiads", "uuid": "u-1",
          "is_reasoning_complete": [True, True, True, False],
          "generations": ["<think>\nThree fours are 12.\n</think>\n\nSo \\boxed{12}.",
                          "<think>\n3 * 4 = 13?\n</think>\n\nSo \\boxed{13}.",
                          "<think>\nOnce more: 12.\n</think>\n\n\\boxed{12}",
                          "<think>\n3 * 4 = 3 + 3 + 3 + 3 = 1"],
          "correctness_math_verify": [True, False, True, False], "correctness_llama": None,
          "finish_reasons": None, "correctness_count": 2,
          "messages": [{"role": "user", "content": Q},
                       {"role": "assistant", "content": "<think>\nThree fours are 12.\n</think>\n\nSo \\boxed{12}."}]}
MESSAGES = {"messages": [{"role": "system", "content": "You are terse."},
                         {"role": "user", "content": Q},
                         {"role": "assistant", "content": "It is \\boxed{12}.", "reasoning_content": "3 * 4 = 12."}],
            "answer": "12"}


def write(path, records):
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path)
    elif path.suffix == ".json":
        path.write_text(json.dumps(records, indent=2))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def run(tmp_path, records, suffix=".jsonl", **kw):
    source = write(tmp_path / f"in{suffix}", records)
    return import_traces(ImportConfig(source=str(source), out=str(tmp_path / "out.jsonl"), **kw))


def assistant(tmp_path, i=0):
    return [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()][i]["messages"][-1]["content"]


@pytest.mark.parametrize(
    "record, fmt, thinking, answer",
    [
        (S1K, "s1k", "3 * 4 means three fours.\n4 + 4 + 4 = 12.", "The product is $\\boxed{12}$."),
        (S1K_11, "s1k-1.1", "Okay, 3 * 4 = 12.", "**Answer** \\boxed{12}"),
        (OPENTHOUGHTS, "openthoughts", "Three fours: 12.", "The product is \\boxed{12}."),
        (OPENR1, "openr1", "Three fours are 12.", "So \\boxed{12}."),
        (MESSAGES, "messages", "3 * 4 = 12.", "It is \\boxed{12}."),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 14 else "",
)
@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_each_format_is_detected_and_mapped(tmp_path, record, fmt, thinking, answer, suffix):
    report = run(tmp_path, [record, record], suffix)
    assert report["format"] == fmt and report["read"] == 2
    traces = load_traces(tmp_path / "out.jsonl")  # what stopwise sft --data reads
    assert traces[0]["messages"][-1]["content"] == f"<think>\n{thinking}\n</think>\n\n{answer}"
    # OpenThoughts' default subset has no gold answer (its metadata subset's is read)
    assert traces[0].get("answer") == (None if fmt == "openthoughts" else "12")
    user = [m for m in traces[0]["messages"] if m["role"] == "user"][0]["content"]
    assert Q in user
    if fmt in ("s1k", "s1k-1.1", "openr1"):  # problem fields: the eval prompt's user turn
        assert user.endswith("put your final answer within \\boxed{}.")
    roles = [m["role"] for m in traces[0]["messages"]]
    # OpenThoughts' system prompt asks for its own markers, which are rewritten: dropped
    assert roles == (["system", "user", "assistant"] if fmt == "messages" else ["user", "assistant"])


def test_s1_style_and_the_gemini_teacher(tmp_path):
    report = run(tmp_path, [S1K_11], style="s1", teacher="gemini")
    assert report["kept"] == 1
    content = assistant(tmp_path)
    assert content == f"{S1_THINK_START}\nThree fours make 12.\n{S1_EOT}\n\nAnswer: 13"
    assert load_traces(tmp_path / "out.jsonl", TraceFormat(think_start=S1_THINK_START, eot=S1_EOT))
    with pytest.raises(ValueError, match="no end-of-thinking delimiter '</think>'"):
        load_traces(tmp_path / "out.jsonl")  # an r1 recipe refuses s1-style traces, by name


def test_correctness_flags(tmp_path):
    # OpenR1: per generation; one kept per problem by default, all that pass with no cap
    report = run(tmp_path, [OPENR1], keep_correct="flags")
    assert (report["traces"], report["kept"]) == (4, 1)
    assert report["dropped"] == {FLAGGED_WRONG: 1, OVER_CAP: 1, INCOMPLETE: 1}
    assert report["first_dropped"][FLAGGED_WRONG] == ["u-1/g1"]
    report = run(tmp_path, [OPENR1], keep_correct="flags", max_per_problem=None)
    assert report["kept"] == 2 and "Once more" in assistant(tmp_path, 1)
    # s1K-1.1's grades, per teacher
    assert run(tmp_path, [S1K_11], keep_correct="flags")["kept"] == 1
    with pytest.raises(ValueError, match="no trace kept of 1"):
        run(tmp_path, [S1K_11], keep_correct="flags", teacher="gemini")
    # a copy without the grade fields, and a format that has no flags, are errors
    bare = {k: v for k, v in S1K_11.items() if not k.endswith("_grade")}
    with pytest.raises(ImportFormatError, match="deepseek_grade is missing"):
        run(tmp_path, [bare], keep_correct="flags")
    with pytest.raises(ValueError, match="s1k, which carries no correctness flags"):
        run(tmp_path, [S1K], keep_correct="flags")


def test_grader_filter_counts_wrong_missing_and_unparseable_golds(tmp_path):
    records = [
        {**S1K, "solution": "So $\\boxed{12}$."},                            # kept
        {**S1K, "solution": "12", "attempt": "It is \\boxed{13}."},           # graded wrong
        {**S1K, "solution": "A long proof.\nWith lines and no box."},         # no gold
        {**S1K, "solution": "\\sqrt{", "attempt": "\\boxed{2}"},             # gold math-verify cannot parse
    ]
    report = run(tmp_path, records, keep_correct="grader")
    assert report["kept"] == 1
    assert report["dropped"] == {GRADED_WRONG: 1, NO_GOLD: 1, BAD_GOLD: 1}
    assert report["first_dropped"] == {GRADED_WRONG: ["1"], NO_GOLD: ["2"], BAD_GOLD: ["3"]}
    # an unparseable gold is a counted drop even when the answer repeats it verbatim: the
    # grader reports such a gold, it does not compare strings
    same = {**S1K, "solution": "\\sqrt{", "attempt": "The answer is \\boxed{\\sqrt{}."}
    with pytest.raises(ValueError, match="gold answer the grader cannot parse"):
        run(tmp_path, [same], keep_correct="grader")


def test_empty_parts_are_counted_drops(tmp_path):
    records = [S1K, {**S1K, "thinking_trajectories": ["", " "]}, {**S1K, "attempt": "  "},
               {**MESSAGES} | {"id": "x"}]
    with pytest.raises(ImportFormatError, match=r"record 3 .*fit not the format asked for: s1k"):
        run(tmp_path, records, suffix=".json")  # a record of another format in the middle
    report = run(tmp_path, records[:3])
    assert report["dropped"] == {EMPTY_THINKING: 1, EMPTY_ANSWER: 1}
    assert report["first_dropped"] == {EMPTY_THINKING: ["1"], EMPTY_ANSWER: ["2"]}
    no_think = {"messages": [{"role": "user", "content": Q}, {"role": "assistant", "content": "12"}]}
    assert run(tmp_path, [MESSAGES, no_think])["dropped"] == {EMPTY_THINKING: 1}
    with pytest.raises(ValueError, match=r"no trace kept of 1 \(\{\"empty thinking\": 1\}"):
        run(tmp_path, [no_think])
    assert not (tmp_path / "out.jsonl.part").exists()


def test_unknown_fields_name_what_was_found_and_tried(tmp_path):
    with pytest.raises(ImportFormatError) as err:
        run(tmp_path, [{"prompt": Q, "response": "12"}])
    msg = str(err.value)
    assert "in.jsonl:1" in msg and "fields prompt, response" in msg
    for fmt in ("s1k (question + thinking_trajectories + attempt)", "openr1 (problem + generations)",
                "openthoughts (conversations or problem + deepseek_reasoning + deepseek_solution)",
                "messages (messages)"):
        assert fmt in msg
    with pytest.raises(ImportFormatError, match="fit not the format asked for: openr1"):
        run(tmp_path, [S1K], format="openr1")
    bad_turn = {"conversations": [{"from": "robot", "value": "hi"}]}
    with pytest.raises(ImportFormatError, match=r"in.jsonl:1: conversation turn 0 must have from user"):
        run(tmp_path, [bad_turn])
    with pytest.raises(FileNotFoundError):
        run_missing = ImportConfig(source=str(tmp_path / "nope.jsonl"), out=str(tmp_path / "o.jsonl"))
        import_traces(run_missing)


def test_a_dataset_directory_goes_through_load_dataset(tmp_path):
    data = tmp_path / "ds" / "data"
    data.mkdir(parents=True)
    write(data / "train-00000-of-00001.parquet", [OPENR1, {**OPENR1, "uuid": "u-2"}])
    report = import_traces(ImportConfig(source=str(tmp_path / "ds"), out=str(tmp_path / "out.jsonl")))
    assert report["source"].endswith("ds:train") and report["format"] == "openr1" and report["kept"] == 2
    with pytest.raises(ValueError, match="cannot load dataset .*:test"):
        import_traces(ImportConfig(source=str(tmp_path / "ds"), out=str(tmp_path / "o.jsonl"), split="test"))


def test_shared_samples_through_the_cli(data_dir, tmp_path, capsys):
    for name in ("r1_traces_sample.json", "qwen3_traces_sample.json"):
        out = tmp_path / name.replace(".json", ".jsonl")
        assert main(["data", "import", str(data_dir / "sft" / name), "--out", str(out),
                     "--keep-correct", "grader"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert (report["format"], report["read"], report["kept"], report["dropped"]) == ("fields", 5, 5, {})
        traces = load_traces(out)
        assert [t["answer"] for t in traces] == ["0", "98", "4", "17", "6"]
    assert main(["data", "import", str(tmp_path / "missing.json"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
