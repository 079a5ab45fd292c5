"""The demo world: problems, splits, the programmatic teacher, the student tokenizer and model."""

import json
import re

import pytest

from stopwise.prompts import (
    DEFAULT_INSTRUCTION,
    DEFAULT_LEVEL_INSTRUCTIONS,
    PromptConfig,
    build_prompt,
)
from stopwise.thinking import detect_thinking_format
from stopwise.world import (
    DEFAULT_MAX_NEW_TOKENS,
    TeacherConfig,
    build_student,
    build_world_tokenizer,
    generate_problems,
    make_traces,
    problem_from_record,
    write_split,
    write_trace,
)
from stopwise.world.problems import split_of


@pytest.fixture(scope="module")
def tokenizer():
    return build_world_tokenizer()


def chain(start, steps):
    x = start
    for op, k in steps:
        x = {"add": x + k, "sub": x - k, "mul": x * k}[op] % 10
    return x


def test_splits_are_disjoint_and_deterministic():
    train = generate_problems(400, seed=1, split="train")
    test = generate_problems(400, seed=2, split="test")
    assert {p.key() for p in train}.isdisjoint({p.key() for p in test})
    assert len({p.key() for p in train}) == 400  # no duplicates within a split
    assert all(p.split() == "train" for p in train) and all(split_of(p.key()) == "test" for p in test)
    assert generate_problems(50, seed=1, split="train") == train[:50]
    assert generate_problems(50, seed=3, split="train") != train[:50]
    assert {p.difficulty for p in train} == {2, 3, 4, 5, 6}
    assert {p.difficulty for p in generate_problems(30, 0, min_steps=3, max_steps=3)} == {3}
    with pytest.raises(ValueError):
        generate_problems(5, 0, split="dev")
    with pytest.raises(ValueError):
        generate_problems(5, 0, min_steps=4, max_steps=2)


def test_write_split_records(tmp_path):
    path = write_split(tmp_path / "test.jsonl", 40, seed=0, split="test")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 40 and len({r["id"] for r in records}) == 40
    for r in records:
        assert set(r) >= {"id", "problem", "answer", "difficulty"}
        assert r["answer"] == str(chain(r["start"], r["steps"]))
        assert problem_from_record(r).text == r["problem"]
        assert re.fullmatch(r"\d", r["answer"])
    try:
        from stopwise.benchmarks import load_benchmark
    except ImportError:
        return
    problems = load_benchmark(str(path))
    assert [p.id.split("/")[-1] for p in problems] == [r["id"] for r in records]
    assert [str(p.answer) for p in problems] == [r["answer"] for r in records]


def test_teacher_is_always_right_at_the_end():
    traces = make_traces(600, seed=5, config=TeacherConfig(error_rate=0.2))
    assert any(t.n_errors for t in traces) and any(t.n_checks == 0 for t in traces)
    for t in traces:
        gold = chain(t.problem.start, t.problem.steps)
        assert re.findall(r"\\boxed\{(\d+)\}", t.answer_text) == [str(gold)]
        # every conclusion and every recomputation ends on the right value
        assert set(re.findall(r"final value of x is (\d+)", t.thinking)) == {str(gold)}
        # a slip is always followed by its correction
        assert t.thinking.count("that is not right") == t.n_errors
        # the first pass has one line per step, re-verification never changes the answer
        assert t.core_thinking.count("Step ") == t.problem.difficulty
        # of several checks the last is of one step, so the value stated just before the
        # closing conclusion is often a middle step's: the conclusion copies the first one
        if t.n_checks >= 2:
            last_check = [text for kind, text in t.segments if kind == "check"][-1]
            assert "start" not in last_check and last_check.count(" so x = ") == 1


def test_trace_format(tokenizer):
    t = write_trace(generate_problems(1, 0)[0])
    messages = t.messages()
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"].endswith(DEFAULT_INSTRUCTION)
    content = messages[1]["content"]
    assert content.startswith("<think>\nWe start with x = ")
    thinking, answer = content.split("</think>")
    assert answer.startswith("\n\n") and "\\boxed{" in answer
    assert "<think>" not in answer
    try:
        from stopwise.grading import is_correct
    except ImportError:
        return
    assert is_correct(content[len("<think>\n"):], str(t.problem.answer))


def test_teacher_is_redundant_and_longer_on_harder_problems(tokenizer):
    traces = make_traces(400, seed=2)
    total, redundant = 0, 0
    by_difficulty: dict[int, list[int]] = {}
    for t in traces:
        n = len(tokenizer.encode(t.assistant, add_special_tokens=False))
        core = len(tokenizer.encode("<think>\n" + t.core_thinking + "</think>\n\n" + t.answer_text,
                                    add_special_tokens=False))
        total += n
        redundant += n - core
        by_difficulty.setdefault(t.problem.difficulty, []).append(n)
    assert redundant / total >= 0.55
    means = [sum(v) / len(v) for _, v in sorted(by_difficulty.items())]
    assert means == sorted(means)
    assert 150 <= total / len(traces) <= 350
    # like R1 traces against a generation cap: a few of the teacher's go past the demo's
    lengths = [n for v in by_difficulty.values() for n in v]
    assert 0 < sum(n > DEFAULT_MAX_NEW_TOKENS for n in lengths) / len(lengths) <= 0.04
    # the number of re-verifications is random: problems of equal difficulty vary
    assert len({t.n_checks for t in traces if t.problem.difficulty == 4}) >= 3
    # a concise teacher re-verifies at most once
    assert max(t.n_checks for t in make_traces(100, 2, TeacherConfig(verbosity=0))) <= 1


def test_teacher_config_validation():
    with pytest.raises(ValueError):
        TeacherConfig(error_rate=1.5)
    with pytest.raises(ValueError):
        TeacherConfig(verbosity=-1)


def test_tokenizer_round_trips_everything(tokenizer):
    texts = [DEFAULT_INSTRUCTION, *DEFAULT_LEVEL_INSTRUCTIONS.values()]
    for t in make_traces(30, seed=3):
        texts += [m["content"] for m in t.messages()]
    texts.append("Any text at all: ünïcode, $\\frac{1}{2}$ and 12345.")
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert tokenizer.decode(ids) == text
    vocab = tokenizer.get_vocab()
    for tag in ("<think>", "</think>"):
        assert tag in vocab
        assert tokenizer.encode(tag, add_special_tokens=False) == [vocab[tag]]
        assert tag not in tokenizer.all_special_tokens  # ordinary tokens
        assert tokenizer.decode([vocab[tag]], skip_special_tokens=True) == tag
    assert tokenizer.eos_token == "<|im_end|>"
    # numbers are spelled digit by digit: " 12" is two tokens
    assert len(tokenizer.encode(" 12", add_special_tokens=False)) == 2


def test_student_loads_with_its_own_tokenizer(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_student(tmp_path / "student", hidden_size=32, intermediate_size=64)
    tok = AutoTokenizer.from_pretrained(path)
    built = build_world_tokenizer()
    text = write_trace(generate_problems(1, 4)[0]).assistant
    assert tok.encode(text) == built.encode(text)  # not replaced by an architecture's tokenizer
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.vocab_size == len(tok)
    assert model.generation_config.eos_token_id == tok.eos_token_id
    fmt = detect_thinking_format(tok)
    assert fmt.eot == "</think>" and len(fmt.eot_ids) == 1
    prompt = build_prompt(tok, "Start with x = 1. Step 1: add 2.", fmt, PromptConfig(level="short"))
    assert prompt.endswith("<|im_start|>assistant\n<think>\n")
    assert DEFAULT_LEVEL_INSTRUCTIONS["short"] in prompt



def test_level_sentences_state_the_length_of_the_trace(tmp_path):
    from stopwise.world.teacher import write_traces

    plain = [json.loads(line) for line in write_traces(tmp_path / "a.jsonl", 600, 3).open()]
    mixed = [json.loads(line) for line in write_traces(
        tmp_path / "b.jsonl", 600, 3, TeacherConfig(level_share=0.5)).open()]
    # the assistant turns are the same, about half of the user turns gain a level sentence
    assert [r["messages"][1] for r in plain] == [r["messages"][1] for r in mixed]
    tagged = []
    for p, m in zip(plain, mixed):
        extra = m["messages"][0]["content"].removeprefix(p["messages"][0]["content"])
        levels = [lv for lv, text in DEFAULT_LEVEL_INSTRUCTIONS.items() if text in extra]
        assert levels == ([m["level"]] if m.get("level") else []) and (levels or extra == "")
        if levels:
            tagged.append(m)
    assert 0.4 <= len(tagged) / 600 <= 0.6
    # within a number of steps, the level orders the thinking lengths
    for steps in range(2, 7):
        mean = {}
        for lv in ("short", "medium", "long"):
            lengths = [len(m["messages"][1]["content"]) for m in tagged
                       if m["level"] == lv and m["difficulty"] == steps]
            mean[lv] = sum(lengths) / len(lengths)
        assert mean["short"] < mean["medium"] < mean["long"], (steps, mean)
    with pytest.raises(ValueError, match="level_share"):
        TeacherConfig(level_share=1.5)
    with pytest.raises(ValueError, match="<= 1"):
        TeacherConfig(level_share=0.6, random_level_share=0.6)
    # random sentences instead: same share, but they say nothing about the trace's length
    random_mix = [json.loads(line) for line in write_traces(
        tmp_path / "c.jsonl", 600, 3, TeacherConfig(random_level_share=0.5)).open()]
    assert [r["messages"][1] for r in plain] == [r["messages"][1] for r in random_mix]
    stated = {lv: [len(m["messages"][1]["content"]) for m in random_mix
                   if DEFAULT_LEVEL_INSTRUCTIONS[lv] in m["messages"][0]["content"]]
              for lv in DEFAULT_LEVEL_INSTRUCTIONS}
    assert 0.4 <= sum(map(len, stated.values())) / 600 <= 0.6
    overall = sum(len(m["messages"][1]["content"]) for m in random_mix) / 600
    assert all(abs(sum(v) / len(v) / overall - 1) < 0.2 for v in stated.values())
