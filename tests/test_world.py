"""The demo world: problems, splits, the programmatic teacher, pretraining text, the student."""

import json
import random
import re
from dataclasses import replace

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
from stopwise.world.pretrain import PretrainConfig, document, drill, lookup_positions
from stopwise.world.problems import OPERANDS, split_of, start_line, step_label, step_op
from stopwise.world.student import StudentConfig
from stopwise.world.teacher import wraps


@pytest.fixture(scope="module")
def tokenizer():
    return build_world_tokenizer()


def chain(start, steps):
    x = start
    for op, k in steps:
        x = {"add": x + k, "sub": x - k, "mul": x * k}[op] % 10
    return x


def test_splits_are_disjoint_and_deterministic():
    splits = {s: generate_problems(300, seed=i, split=s) for i, s in enumerate(("train", "dev", "test"))}
    keys = {s: {p.key() for p in ps} for s, ps in splits.items()}
    assert all(len(k) == 300 for k in keys.values())  # no duplicates within a split
    assert keys["train"].isdisjoint(keys["dev"]) and keys["train"].isdisjoint(keys["test"])
    assert keys["dev"].isdisjoint(keys["test"])
    assert all(split_of(k) == s for s, ks in keys.items() for k in ks)
    assert generate_problems(50, seed=0, split="train") == splits["train"][:50]
    assert generate_problems(50, seed=3, split="train") != splits["train"][:50]
    assert {p.difficulty for p in splits["train"]} == {2, 3, 4, 5, 6}
    assert {p.difficulty for p in generate_problems(30, 0, min_steps=3, max_steps=3)} == {3}
    with pytest.raises(ValueError, match="unknown split"):
        generate_problems(5, 0, split="validation")
    with pytest.raises(ValueError, match="min_steps"):
        generate_problems(5, 0, min_steps=4, max_steps=2)
    # a world too small for the request says how many problems there are
    with pytest.raises(ValueError, match=r"cannot draw 5000 distinct test problems with 1-1 steps"):
        generate_problems(5000, 0, split="test", min_steps=1, max_steps=1)


def test_write_split_records(tmp_path):
    path = write_split(tmp_path / "test.jsonl", 40, seed=0, split="test")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(records) == 40 and len({r["id"] for r in records}) == 40
    for r in records:
        assert set(r) >= {"id", "problem", "answer", "difficulty"}
        assert r["answer"] == str(chain(r["start"], r["steps"]))
        assert problem_from_record(r).text == r["problem"]
        assert re.fullmatch(r"\d", r["answer"])
    from stopwise.benchmarks import load_benchmark

    problems = load_benchmark(str(path))
    assert [p.id.split("/")[-1] for p in problems] == [r["id"] for r in records]
    assert [str(p.answer) for p in problems] == [r["answer"] for r in records]


def test_every_statement_of_a_problem_is_one_token(tokenizer):
    """The lookup a trace needs is one hop: each named step and the start are single tokens."""
    for i in range(6):
        for op in OPERANDS:
            for k in OPERANDS[op]:
                assert len(tokenizer.encode(f" {step_label(i)}{step_op(op, k)}", add_special_tokens=False)) == 1
                # written in a trace ("C −7"), the name and the operation are separate tokens
                assert len(tokenizer.encode(f"{step_label(i)} {step_op(op, k)}", add_special_tokens=False)) == 2
    p = generate_problems(1, 0)[0]
    assert p.text.startswith(f"Apply these steps to x, working modulo 10:\n{start_line(p.start)}, ")
    assert p.text.endswith("final value of x?")
    assert len(tokenizer.encode(start_line(p.start), add_special_tokens=False)) == 1
    # the start token begins every pass of a trace
    for t in make_traces(50, 1):
        assert t.thinking.count(start_line(t.problem.start)) == 1 + t.n_checks
    # a negative number is never a step's token: "-3" and "−3" differ
    assert tokenizer.encode(" -3", add_special_tokens=False) != tokenizer.encode(" −3", add_special_tokens=False)


def test_teacher_slips_only_on_wrapping_subtractions_and_checks_catch_them():
    traces = make_traces(800, seed=5, config=TeacherConfig(slip_rate=0.5))
    slipped = [t for t in traces if t.n_slips]
    assert 0.1 < len(slipped) / len(traces) < 0.9
    for t in traces:
        p, gold = t.problem, t.problem.answer
        hasty = [int(v) for v in re.findall(r"→ (\d)\n", t.core_thinking)]
        assert len(hasty) == p.difficulty
        prev = p.start
        for (op, k), v in zip(p.steps, hasty):
            if v != chain(prev, [(op, k)]):  # a slip: a wrap written the wrong way round
                assert wraps(prev, op, k) and v == k - prev
            prev = v
        boxed = re.findall(r"\\boxed\{(\d)\}", t.answer_text)
        concluded = int(re.findall(r"So the result is (\d)", t.core_thinking)[0])
        if t.n_checks:
            assert boxed == [str(gold)]  # a trace that checked is right
            checks = [text for kind, text in t.segments if kind == "check"]
            if concluded != gold:  # the first check corrects the conclusion, and is checked again
                assert checks[0].endswith(f"So the result is {gold}, not {concluded}.\n") and len(checks) >= 2
            assert all(c.count("\n") == p.difficulty + 3 for c in checks)  # opener, start, steps, closer
        else:
            assert boxed == [str(concluded)]  # no check: the hasty conclusion stands, slip or not
        # the thinking always ends on the value the answer states
        assert t.thinking.endswith(f"So the result is {boxed[0]}.\n")
    # without slips every trace is right
    assert all(re.findall(r"boxed\{(\d)\}", t.answer_text) == [str(t.problem.answer)]
               for t in make_traces(200, 5, TeacherConfig(slip_rate=0.0)))


def test_trace_format_grades_correct(tokenizer):
    from stopwise.grading import is_correct

    t = write_trace(generate_problems(1, 0)[0])
    messages = t.messages()
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"].endswith(DEFAULT_INSTRUCTION)
    content = messages[1]["content"]
    assert content.startswith(f"<think>\n{start_line(t.problem.start)}\n{t.problem.names()[0]} ")
    assert t.problem.names()[-1] == "A"  # steps count down to A
    thinking, answer = content.split("</think>")
    assert answer.startswith("\n\n") and "\\boxed{" in answer and "<think>" not in answer
    assert is_correct(content[len("<think>\n"):], str(t.problem.answer))


def test_teacher_is_redundant_and_longer_on_harder_problems(tokenizer):
    traces = make_traces(600, seed=2)
    total, redundant = 0, 0
    by_difficulty: dict[int, list[int]] = {}
    for t in traces:
        n = len(tokenizer.encode(t.assistant, add_special_tokens=False))
        checks = [text for kind, text in t.segments if kind == "check"]
        # everything after the first check is redundant (the first catches every slip)
        extra = sum(len(tokenizer.encode(c, add_special_tokens=False)) for c in checks[1:])
        total += n
        redundant += extra
        by_difficulty.setdefault(t.problem.difficulty, []).append(n)
    assert redundant / total >= 0.3
    means = [sum(v) / len(v) for _, v in sorted(by_difficulty.items())]
    assert means == sorted(means) and means[-1] > 3 * means[0]
    lengths = [n for v in by_difficulty.values() for n in v]
    assert max(lengths) < DEFAULT_MAX_NEW_TOKENS  # the cap cuts students, not the teacher
    # the number of re-verifications is random: problems of equal difficulty vary
    assert len({t.n_checks for t in traces if t.problem.difficulty == 4}) >= 3
    # a concise teacher re-verifies at most once, twice after a correction
    assert max(t.n_checks for t in make_traces(100, 2, TeacherConfig(verbosity=0))) <= 2


def test_teacher_config_validation():
    for bad in ({"slip_rate": 1.5}, {"p_no_check": -0.1}, {"verbosity": -1}, {"max_checks": -1},
                {"level_share": 1.5}, {"level_share": 0.6, "random_level_share": 0.6},
                {"level_rule": "terciles"}, {"level_checks": {"short": 1, "long": 4}},
                {"level_checks": {"short": 0, "medium": 2, "long": 4}}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TeacherConfig(**bad)


def test_pretraining_text_states_then_looks_up():
    rng = random.Random(0)
    for _ in range(200):
        doc = document(rng, 3)
        header, *lines = doc.strip().split("\n")
        start, *stated = header.rstrip(".").split(", ")
        ops = {s[0]: s[1:] for s in stated}
        assert 1 <= len(ops) <= 3 and lines[0] == start
        x = int(start.removeprefix("x="))
        for line in lines[1:1 + len(ops)]:
            name, op, _, value = line.split(" ")
            assert ops[name] == op
            x = chain(x, [({"+": "add", "−": "sub", "×": "mul"}[op[0]], int(op[1:]))])
            assert int(value) == x
        d = drill(rng, 3)
        table, *queries = d.strip().split("\n")
        assert sorted(q.replace(" ", "") for q in queries) == sorted(table.removeprefix("Steps: ").rstrip(".").split(", "))
    with pytest.raises(ValueError, match="max_steps_per_document"):
        PretrainConfig(max_steps_per_document=0)
    with pytest.raises(ValueError, match="drill_share"):
        PretrainConfig(drill_share=2)


def test_lookup_positions_are_the_step_names_that_open_worked_lines(tokenizer):
    rng = random.Random(1)
    for _ in range(50):
        doc = document(rng, 3, max_checks=3)
        tokens = [tokenizer.decode([t]) for t in tokenizer(doc, add_special_tokens=False)["input_ids"]]
        worked = [line for line in doc.split("\n")[1:] if line[:1].isupper() and line[1:2] == " "]
        positions = lookup_positions(tokens)
        assert len(positions) == len(worked) > 0
        assert [tokens[i] + tokens[i + 1] for i in positions] == [line.split(":")[0].split(" →")[0] for line in worked]


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_pretraining_goes_on_in_rounds_until_the_lookups_form_and_resumes_at_its_round(tmp_path, monkeypatch):
    import stopwise.world.pretrain as pretrain

    config = PretrainConfig(steps=2, batch_size=2, extra_steps=2, lookup_target=1.0, max_extra_rounds=2)
    whole = build_student(tmp_path / "whole", hidden_size=32, intermediate_size=32)
    killed = build_student(tmp_path / "killed", hidden_size=32, intermediate_size=32)
    result = pretrain.pretrain_student(whole, config, seed=3, num_threads=1, progress=False)
    # a 2-step student reads no lookup perfectly: the first round and both further ones
    assert [r["steps"] for r in result["rounds"]] == [2, 2, 2]
    assert all(0 <= r["lookup_accuracy"] < 1 for r in result["rounds"])
    assert pretrain.pretrain_student(whole, config, seed=3) == result  # done: not redone

    real = pretrain.train_round

    def dies_in_round_2(model, tokenizer, config, steps, rng_key, seed, out, progress):
        if out.name == "round-2":
            raise KeyboardInterrupt("killed")
        return real(model, tokenizer, config, steps, rng_key, seed, out, progress)

    monkeypatch.setattr(pretrain, "train_round", dies_in_round_2)
    with pytest.raises(KeyboardInterrupt):
        pretrain.pretrain_student(killed, config, seed=3, num_threads=1, progress=False)
    assert not (killed / pretrain.DONE_FILE).exists()
    assert len(json.loads((killed / "pretrain" / "rounds.json").read_text())) == 2
    monkeypatch.setattr(pretrain, "train_round", real)
    assert pretrain.pretrain_student(killed, config, seed=3, num_threads=1, progress=False)["rounds"] == result["rounds"]
    a, b = _weights(whole), _weights(killed)
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert not a["model.embed_tokens.weight"].equal(_weights(whole / "pretrain" / "round-1")["model.embed_tokens.weight"])

    # a target met (0: never asked) ends after the first round
    once = build_student(tmp_path / "once", hidden_size=32, intermediate_size=32)
    assert len(pretrain.pretrain_student(once, replace(config, lookup_target=0.0), seed=3, num_threads=1,
                                         progress=False)["rounds"]) == 1
    with pytest.raises(ValueError, match="lookup_target"):
        PretrainConfig(lookup_target=1.5)
    with pytest.raises(ValueError, match="extra_steps"):
        PretrainConfig(extra_steps=0)


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

    path = build_student(tmp_path / "student", hidden_size=64,
                         intermediate_size=64)
    tok = AutoTokenizer.from_pretrained(path)
    built = build_world_tokenizer()
    text = write_trace(generate_problems(1, 4)[0]).assistant
    assert tok.encode(text) == built.encode(text)  # not replaced by an architecture's tokenizer
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.vocab_size == len(tok)
    assert model.config.hidden_size // model.config.num_attention_heads in (32, 64)  # vLLM's CPU backend
    assert model.generation_config.eos_token_id == tok.eos_token_id
    fmt = detect_thinking_format(tok)
    assert fmt.eot == "</think>" and len(fmt.eot_ids) == 1
    prompt = build_prompt(tok, generate_problems(1, 0)[0].text, fmt, PromptConfig(level="short"))
    assert prompt.endswith("<|im_start|>assistant\n<think>\n")
    assert DEFAULT_LEVEL_INSTRUCTIONS["short"] in prompt
    # different seeds give different initial weights
    other = build_student(tmp_path / "other", hidden_size=64,
                          intermediate_size=64, seed=1)
    w0 = model.model.layers[0].self_attn.q_proj.weight
    w1 = AutoModelForCausalLM.from_pretrained(other).model.layers[0].self_attn.q_proj.weight
    assert not w0.allclose(w1)
    with pytest.raises(ValueError, match="hidden_size 96 is not a multiple of head_dim 64"):
        StudentConfig(hidden_size=96, head_dim=64)
    with pytest.raises(ValueError, match="3 query heads do not split into 2"):
        StudentConfig(num_kv_heads=2)


def test_level_sentences_state_the_length_of_the_trace(tmp_path, tokenizer):
    from stopwise.world.teacher import write_traces

    plain = [json.loads(line) for line in write_traces(tmp_path / "a.jsonl", 600, 3).open()]
    mixed = [json.loads(line) for line in write_traces(
        tmp_path / "b.jsonl", 600, 3, TeacherConfig(level_share=0.5, level_rule="length"),
        tokenizer=tokenizer).open()]
    with pytest.raises(ValueError, match="tokenizer that counts thinking tokens"):
        write_traces(tmp_path / "c.jsonl", 10, 3, TeacherConfig(level_share=0.5, level_rule="length"))
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
    for steps in range(3, 7):
        mean = {}
        for lv in ("short", "medium", "long"):
            lengths = [len(m["messages"][1]["content"]) for m in tagged
                       if m["level"] == lv and m["difficulty"] == steps]
            mean[lv] = sum(lengths) / len(lengths)
        assert mean["short"] < mean["medium"] < mean["long"], (steps, mean)
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


def test_level_sentences_set_the_number_of_checks(tmp_path):
    from stopwise.world.teacher import write_traces

    plain = [json.loads(line) for line in write_traces(tmp_path / "a.jsonl", 600, 3).open()]
    mixed = [json.loads(line) for line in write_traces(
        tmp_path / "b.jsonl", 600, 3, TeacherConfig(level_share=0.5, level_rule="checks")).open()]
    tagged = [m for m in mixed if m.get("level")]
    assert 0.4 <= len(tagged) / 600 <= 0.6
    assert {m["level"] for m in tagged} == {"short", "medium", "long"}
    for p, m in zip(plain, mixed):
        hasty = re.split(r"\n(?:Wait|Hmm)|</think>", p["messages"][1]["content"])[0]
        if not m.get("level"):
            assert m == p  # untagged prompts keep the coin's trace
            continue
        assert DEFAULT_LEVEL_INSTRUCTIONS[m["level"]] in m["messages"][0]["content"]
        # the same hasty pass, then as many checks as the level says (two after a correction)
        assert m["messages"][1]["content"].startswith(hasty)
        corrected = ", not " in m["messages"][1]["content"]
        want = {"short": 2 if corrected else 1, "medium": 2, "long": 4}[m["level"]]
        assert m["n_checks"] == want, (m["level"], corrected, m["n_checks"])
        assert m["messages"][1]["content"].count("carefully.") == want


def test_level_documents_state_a_level_and_check_as_it_says():
    from stopwise.world.pretrain import level_document

    rng = random.Random(0)
    seen = set()
    for _ in range(60):
        user, assistant = level_document(rng, 3, {"short": 1, "medium": 2, "long": 4})
        level = next(lv for lv, text in DEFAULT_LEVEL_INSTRUCTIONS.items() if text in user["content"])
        seen.add(level)
        corrected = ", not " in assistant["content"]
        want = {"short": 2 if corrected else 1, "medium": 2, "long": 4}[level]
        assert assistant["content"].count("carefully.") == want
    assert seen == {"short", "medium", "long"}
    with pytest.raises(ValueError, match="level_checks"):
        PretrainConfig(level_checks={"short": 0})
