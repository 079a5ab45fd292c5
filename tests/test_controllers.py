"""Stopping controllers: TS exactness, budget forcing vs s1's multi-call procedure, config."""

from __future__ import annotations

import math

import pytest
import torch

from stopwise.controllers import (
    S1_ANSWER_PREFIX,
    BudgetForcing,
    ControllerConfig,
    StopPolicy,
    StopRankRecorder,
    TemperatureScaling,
    make_controller,
    ts_log_probs,
    ts_stop_logit,
)
from stopwise.prompts import PromptConfig, build_prompt
from stopwise.thinking import detect_thinking_format

torch.set_num_threads(1)

E = 7  # EOT's first token in the synthetic tests
V = 300


# ---------------------------------------------------------------------------------------------
# TS: exactness against the SPEC formula


def spec_ts(scores: torch.Tensor, e: int, T: float) -> torch.Tensor:
    """SPEC's p' from softmax(scores), in float64 (1 - p(e) as the sum of the others)."""
    logp = torch.log_softmax(scores.double(), dim=-1)
    p = logp.exp()
    others = torch.ones_like(p, dtype=torch.bool)
    others[:, e] = False
    one_minus_pe = (p * others).sum(-1, keepdim=True)
    # log p(e): from 1 - p(e) when p(e) is near 1 (log_softmax's own value loses digits there)
    log_pe = torch.where(one_minus_pe < 0.5, torch.log1p(-one_minus_pe), logp[:, e : e + 1])
    pe_new = torch.exp(log_pe / T)
    one_minus_pe_new = -torch.expm1(log_pe / T)
    out = p * one_minus_pe_new / one_minus_pe
    out[:, e : e + 1] = pe_new
    unchanged = one_minus_pe == 0  # p(e) = 1
    return torch.where(unchanged, p, out)


def random_scores(pe_logit: float, batch: int = 4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(batch, V, generator=g) * 3
    s[:, E] = pe_logit
    s[:, 11] = -math.inf  # a banned token stays banned
    return s


def first_call(proc, scores):
    return proc(torch.zeros(scores.shape[0], 5, dtype=torch.long), scores)


def rel_err(q: torch.Tensor, ref: torch.Tensor) -> float:
    """Max relative error over probabilities >= 1e-60. Below that a float32 log-probability
    (|log p| > 138, spacing ~1e-5) cannot carry 1e-5 relative precision: absolute check only."""
    assert torch.equal(q == 0, ref == 0)
    big = ref >= 1e-60
    assert ((q - ref).abs()[~big] <= 1e-60).all()
    return ((q[big] - ref[big]).abs() / ref[big]).max().item()


@pytest.mark.parametrize("pe_logit", [-40.0, -8.0, 0.0, 3.0, 12.0, 17.0, 25.0, 40.0])
@pytest.mark.parametrize("T", [0.05, 0.1, 0.5, 1.0, 2.0, 7.0, 1e6])
def test_ts_matches_spec(pe_logit, T):
    scores = random_scores(pe_logit)
    out = first_call(TemperatureScaling([E], T), scores)
    q = torch.softmax(out.double(), dim=-1)
    assert rel_err(q, spec_ts(scores, E, T)) < 1e-5
    assert torch.isneginf(out[:, 11]).all()
    if T != 1.0:  # log-probabilities: already normalised
        assert torch.allclose(torch.logsumexp(out.double(), -1), torch.zeros(4, dtype=torch.float64), atol=1e-5)


def test_ts_extremes_and_identity():
    s = torch.full((2, V), -math.inf)
    s[:, E] = 1.0  # p(e) = 1: unchanged
    s[1, 3] = -200.0  # p(e) = 1 - 1e-87: p'(3) ~= p(3) / T
    out = ts_log_probs(s, E, 3.0)
    assert out[0, E] == 0 and torch.isneginf(out[0, :E]).all() and torch.isneginf(out[0, E + 1 :]).all()
    assert not torch.isnan(out).any()
    ref = math.log(math.exp(-201.0) / 3.0)
    assert abs(out[1, 3].item() - ref) < 1e-4
    e_banned = random_scores(0.0)
    e_banned[:, E] = -math.inf  # p(e) = 0: the others unchanged
    out = ts_log_probs(e_banned, E, 0.3)
    assert torch.isneginf(out[:, E]).all()
    assert torch.allclose(out.softmax(-1), e_banned.softmax(-1), atol=1e-7)
    scores = random_scores(1.0)
    assert first_call(TemperatureScaling([E], 1.0), scores) is scores  # T = 1: nothing done


def test_ts_stop_logit_leaves_the_same_distribution():
    """vLLM's form of TS (only the stop token's score moves) gives ts_log_probs's
    distribution, extremes included (p(e) = 1, p(e) ~ 1, p(e) = 0)."""
    s = random_scores(1.0, batch=6)
    s[4, :] = -math.inf
    s[4, E] = 1.0
    s[5, E] = -math.inf
    for T in (0.3, 2.0, 5.0):
        moved = s.clone()
        logit, log_pe = ts_stop_logit(s.clone(), E, T)
        moved[:, E] = logit.squeeze(-1)
        want = ts_log_probs(s, E, T)
        assert torch.allclose(moved.log_softmax(-1).exp(), want.exp(), atol=1e-6)
        assert torch.allclose(log_pe.squeeze(-1).exp(), want[:, E].exp(), atol=1e-6)
        assert torch.equal(moved[:, :E], s[:, :E]) and torch.equal(moved[:, E + 1 :], s[:, E + 1 :])


@pytest.mark.parametrize("greedy", [False, True])
def test_raw_logits_with_temperature_match_tempered_scores(greedy):
    """step_batch(raw logits, temperature=tau), vLLM's order, rewrites in place to what the
    HF order (scores already divided by tau) gives: same distribution, same stop decisions
    (budget forcing with TS, per-row temperatures, forced rows)."""
    taus = torch.tensor([[0.6], [1.0], [1.7], [0.9]])
    kw = dict(stop_temperature=2.0, num_ignore=1, ignore_token_ids=IGN, do_sample=not greedy)
    raw = random_scores(2.0, batch=4, seed=5)
    raw[:, EOT2[0]] = raw.max(dim=-1).values + torch.tensor([-2.0, 0.5, 1.0, 3.0])  # a likely stop
    hf, vl = StopPolicy(EOT2, **kw), StopPolicy(EOT2, **kw)
    states_hf = [hf.new_state() for _ in range(4)]
    states_vl = [vl.new_state() for _ in range(4)]
    for s in (*states_hf, *states_vl):
        s.generator = torch.Generator().manual_seed(11)
    for _ in range(6):
        want = hf.step_batch(states_hf, raw / taus)
        got = raw.clone()
        out = vl.step_batch(states_vl, got, temperature=taus)
        assert out is got  # in place
        assert torch.allclose((got / taus).log_softmax(-1).exp(), want.log_softmax(-1).exp(), atol=1e-6)
        assert [s.n_ignored for s in states_hf] == [s.n_ignored for s in states_vl]
        tok = [int(r.argmax()) for r in want]
        for policy, states in ((hf, states_hf), (vl, states_vl)):
            for s, t in zip(states, tok):
                policy.observe(s, t)
    assert any(s.n_ignored for s in states_vl)  # the stop decision was taken and ignored


def test_ts_offset_invariant_monotone_and_odds():
    scores = random_scores(1.5)
    base = torch.softmax(ts_log_probs(scores, E, 2.5).double(), -1)
    for c in (-20.0, 13.5):
        shifted = torch.softmax(ts_log_probs(scores + c, E, 2.5).double(), -1)
        assert rel_err(shifted, base) < 1e-5
    p = torch.softmax(scores.double(), -1)
    pes = [torch.softmax(ts_log_probs(scores, E, T).double(), -1)[:, E] for T in (0.2, 0.5, 1.0, 2.0, 5.0)]
    for lo, hi in zip(pes, pes[1:]):
        assert (hi > lo).all()  # monotone in T: larger T, larger stop probability
    assert (pes[0] < p[:, E]).all() and (pes[-1] > p[:, E]).all()
    q = torch.softmax(ts_log_probs(scores, E, 0.3).double(), -1)
    j, k = 20, 150  # odds of two other tokens are preserved
    assert torch.allclose(q[:, j] / q[:, k], p[:, j] / p[:, k], rtol=1e-5)


def test_ts_rows_past_eot_untouched():
    proc = TemperatureScaling([E], 4.0)
    scores = random_scores(0.5, batch=2)
    ids = torch.zeros(2, 5, dtype=torch.long)
    proc(ids, scores)
    ids = torch.cat([ids, torch.tensor([[E], [3]])], dim=1)  # row 0 emits EOT
    out = proc(ids, scores)
    assert torch.equal(out[0], scores[0])
    assert not torch.equal(out[1], scores[1])
    assert proc.stats(0)["eot_emitted"] and not proc.stats(1)["eot_emitted"]


# ---------------------------------------------------------------------------------------------
# Budget forcing, driven with synthetic greedy "models"

EOT2 = (1, 9)  # a two-token delimiter (s1's <|im_start|>answer)
IGN = (40, 41)  # a two-token ignore string
PREFIX = (50, 51, 52)


def drive(proc, wants, steps, batch=1):
    """Greedy decoding against a fake model: `wants(row, t, generated)` = its argmax token."""
    ids = torch.zeros(batch, 3, dtype=torch.long)
    gen = [[] for _ in range(batch)]
    for t in range(steps):
        scores = torch.randn(batch, V, generator=torch.Generator().manual_seed(t)) * 0.1
        for r in range(batch):
            scores[r, wants(r, t, gen[r])] = 5.0
        out = proc(ids, scores)
        tok = out.argmax(-1)
        for r in range(batch):
            gen[r].append(int(tok[r]))
        ids = torch.cat([ids, tok[:, None]], dim=1)
    return gen


def always(tok):
    return lambda r, t, g: tok


def test_cap_forces_whole_delimiter_and_prefix():
    proc = BudgetForcing(EOT2, max_thinking_tokens=5, answer_prefix_ids=PREFIX, do_sample=False)
    gen = drive(proc, always(3), 12)[0]
    assert gen == [3] * 5 + list(EOT2) + list(PREFIX) + [3, 3]
    st = proc.stats(0)
    assert st["hit_cap"] and st["eot_emitted"] and st["n_thinking_tokens"] == 5


def test_min_thinking_forces_ignore_string_instead_of_eot():
    proc = BudgetForcing(EOT2, min_thinking_tokens=4, ignore_token_ids=IGN, do_sample=False)
    gen = drive(proc, always(EOT2[0]), 8)[0]
    # wants EOT at once: "Wait" x2 (4 thinking tokens), then EOT allowed and completed
    assert gen[:6] == [*IGN, *IGN, *EOT2]
    st = proc.stats(0)
    assert st["n_ignored"] == 2 and st["n_thinking_tokens"] == 4 and st["eot_emitted"]
    assert not st["hit_cap"]


def test_num_ignore_then_natural_stop_and_cap_overrides_ignore_string():
    wants = lambda r, t, g: EOT2[0] if len(g) in (2, 5) else 3  # noqa: E731
    proc = BudgetForcing(EOT2, num_ignore=1, ignore_token_ids=IGN, do_sample=False)
    gen = drive(proc, wants, 9)[0]
    assert gen[:7] == [3, 3, *IGN, 3, *EOT2]
    # cap in the middle of a forced ignore string: the cap wins
    proc = BudgetForcing(EOT2, max_thinking_tokens=3, min_thinking_tokens=3, ignore_token_ids=IGN,
                         answer_prefix_ids=PREFIX, do_sample=False)
    gen = drive(proc, always(EOT2[0]), 8)[0]
    assert gen == [*IGN, IGN[0], *EOT2, *PREFIX]
    assert proc.stats(0)["n_thinking_tokens"] == 3 and proc.stats(0)["hit_cap"]


def test_model_started_delimiter_is_completed():
    wants = lambda r, t, g: EOT2[0] if len(g) == 2 else 3  # noqa: E731
    proc = BudgetForcing(EOT2, max_thinking_tokens=50, do_sample=False)
    gen = drive(proc, wants, 6)[0]
    assert gen == [3, 3, *EOT2, 3, 3]  # the model wanted 3 after <|im_start|>; "answer" forced


def test_batch_rows_are_independent():
    def wants(r, t, g):
        return EOT2[0] if (r == 0 and len(g) == 1) else 3

    proc = BudgetForcing(EOT2, max_thinking_tokens=4, num_ignore=1, ignore_token_ids=IGN,
                         answer_prefix_ids=PREFIX, do_sample=False)
    gen = drive(proc, wants, 10, batch=2)
    assert gen[0] == [3, *IGN, 3, *EOT2, *PREFIX, 3]
    assert gen[1] == [3, 3, 3, 3, *EOT2, *PREFIX, 3]


def test_sampled_stop_decision_is_exact():
    n = 4000
    scores = torch.zeros(n, V)
    scores[:, E] = math.log(0.3 * (V - 1) / 0.7)  # p(e) = 0.3
    proc = BudgetForcing([E], num_ignore=1, ignore_token_ids=[40, 41], do_sample=True,
                         generator=torch.Generator().manual_seed(0))
    out = first_call(proc, scores)
    forced = torch.isneginf(out).sum(-1) == V - 1
    assert abs(forced.float().mean().item() - 0.3) < 0.03
    assert (out[forced].argmax(-1) == 40).all()
    kept = torch.softmax(out[~forced].double(), -1)
    assert (kept[:, E] == 0).all()  # not stopping: drawn from p conditioned on "not EOT"
    assert torch.allclose(kept[:, 0], torch.full_like(kept[:, 0], 1 / (V - 1)))
    assert sum(proc.stats(i)["n_ignored"] for i in range(n)) == int(forced.sum())


def test_request_controller_matches_batch_adapter():
    policy_args = dict(stop_temperature=1.7, max_thinking_tokens=6, answer_prefix_ids=PREFIX)
    batch = TemperatureScaling(EOT2, 1.7, 6, PREFIX)
    req = StopPolicy(EOT2, **policy_args).for_request()
    ids = torch.zeros(1, 3, dtype=torch.long)
    out_ids: list[int] = []
    for t in range(12):
        scores = torch.randn(1, V, generator=torch.Generator().manual_seed(t))
        scores[0, EOT2[0]] = -2.0
        a = batch(ids, scores)
        b = req(out_ids, scores[0])
        assert torch.equal(a[0], b)
        tok = int(a.argmax(-1))
        out_ids.append(tok)
        ids = torch.cat([ids, torch.tensor([[tok]])], dim=1)
    assert out_ids[6:11] == [*EOT2, *PREFIX]


def test_processor_is_one_generate_call():
    proc = BudgetForcing(EOT2, max_thinking_tokens=5, do_sample=False)
    drive(proc, always(3), 3)
    with pytest.raises(RuntimeError, match="fresh"):
        drive(proc, always(3), 1)
    proc.reset()
    drive(proc, always(3), 2)
    assert proc.stats(0)["n_thinking_tokens"] == 1


# ---------------------------------------------------------------------------------------------
# On the tiny model: one generate pass == s1's multi-call procedure (greedy)


def biased_model(model_dir, eot_first: int, bias: float):
    """The tiny random model is near-uniform and loops; give it a random, contextual lm_head and
    a bias on EOT's first token so greedy decoding stops at varied points. float64: no ties."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float64).eval()
    hidden, vocab = model.config.hidden_size, model.config.vocab_size
    head = torch.nn.Linear(hidden, vocab, bias=True, dtype=torch.float64)
    with torch.no_grad():
        head.weight.copy_(torch.randn(vocab, hidden, generator=torch.Generator().manual_seed(1)))
        head.bias.zero_()
        head.bias[eot_first] = bias
    model.lm_head = head
    return model


def _generate(model, ids, n, stop_ids, pad, processors=None):
    x = torch.tensor([ids])
    out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False,
                         eos_token_id=list(stop_ids), pad_token_id=pad, logits_processor=processors)
    return out[0, len(ids):].tolist()


def s1_multi_call(model, prompt, eot, ignore, prefix, cap, min_think, num_ignore, max_new, eos, pad):
    """s1's procedure (their README / lm-eval harness), with several generate calls: generate
    until the delimiter's first token; while a stop must be ignored, strip it, append the ignore
    string and go on; at the thinking budget cut, append delimiter + answer prefix; then
    generate the answer."""
    e = eot[0]
    thinking: list[int] = []
    ignored = 0
    while True:
        budget = max_new - len(thinking)
        if cap is not None:
            budget = min(budget, cap - len(thinking))
        if budget <= 0:
            break
        cont = _generate(model, prompt + thinking, budget, [e, *eos], pad)
        if cont and cont[-1] == e:
            thinking += cont[:-1]
            if (min_think is not None and len(thinking) < min_think) or ignored < num_ignore:
                ignored += 1
                thinking += list(ignore)
                continue
            seq = thinking + list(eot)
            break
        thinking += cont
        if cont and cont[-1] in eos:
            return thinking[:max_new], ignored
    else:  # pragma: no cover
        raise AssertionError
    if budget <= 0:
        if len(thinking) >= max_new:
            return thinking[:max_new], ignored
        seq = thinking[:cap] + list(eot) + list(prefix)
    if len(seq) >= max_new:
        return seq[:max_new], ignored
    return seq + _generate(model, prompt + seq, max_new - len(seq), eos, pad), ignored


CASES = [
    dict(cap=30, min_think=None, num_ignore=0),
    dict(cap=None, min_think=None, num_ignore=2),
    dict(cap=60, min_think=25, num_ignore=0),
    dict(cap=12, min_think=None, num_ignore=3),
]


@pytest.mark.parametrize("eot_text,bias", [("</think>", 15.0), ("<|im_start|>answer", 10.0)])
def test_single_pass_equals_s1_multi_call(tiny_model_dir, eot_text, bias):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.padding_side = "left"
    fmt = detect_thinking_format(tok, eot=eot_text)
    model = biased_model(tiny_model_dir, fmt.eot_first_id, bias)
    problems = ["What is 3 + 4?", "Solve x", "Find the sum of 12 and 30, then the product."]
    texts = [build_prompt(tok, p, fmt, PromptConfig()) for p in problems]
    eos, pad, max_new = (tok.eos_token_id,), tok.pad_token_id, 80
    batch = tok(texts, return_tensors="pt", padding=True)
    saw = {"ignored": 0, "cap": 0, "natural": 0}
    for case in CASES:
        cfg = ControllerConfig(name="budget", max_thinking_tokens=case["cap"],
                               min_thinking_tokens=case["min_think"], num_ignore=case["num_ignore"])
        proc = make_controller(cfg, tok, fmt, do_sample=False)
        out = model.generate(**batch, max_new_tokens=max_new, do_sample=False, logits_processor=[proc],
                             eos_token_id=list(eos), pad_token_id=pad)
        ignore = tok.encode(cfg.ignore_string, add_special_tokens=False)
        prefix = tok.encode(cfg.answer_prefix, add_special_tokens=False)
        for i, text in enumerate(texts):
            got = out[i, batch.input_ids.shape[1]:].tolist()
            if eos[0] in got:
                got = got[: got.index(eos[0]) + 1]
            prompt = tok(text).input_ids
            want, ignored = s1_multi_call(model, prompt, fmt.eot_ids, ignore, prefix, case["cap"],
                                          case["min_think"], case["num_ignore"], max_new, eos, pad)
            assert got == want, (case, i)
            st = proc.stats(i)
            assert st["n_ignored"] == ignored
            think, _, emitted = fmt.split(got)
            if emitted:
                assert st["n_thinking_tokens"] == len(think)
                saw["cap" if st["hit_cap"] else "natural"] += 1
            saw["ignored"] += ignored
    assert all(saw.values()), saw  # every mechanism was exercised


def test_ts_and_recorder_in_generate(tiny_model_dir):
    from transformers import (
        AutoTokenizer,
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopPLogitsWarper,
    )

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.padding_side = "left"
    fmt = detect_thinking_format(tok)
    model = biased_model(tiny_model_dir, fmt.eot_first_id, 12.0)
    problems = ("What is 3 + 4?", "Solve x", "Find y", "Compute 7 * 8 then add 1")
    texts = [build_prompt(tok, p, fmt, PromptConfig()) for p in problems]
    batch = tok(texts, return_tensors="pt", padding=True)
    neutral = dict(temperature=1.0, top_k=0, top_p=1.0)

    def run(*procs, seed=0, **kw):
        torch.manual_seed(seed)
        return model.generate(**batch, max_new_tokens=40, logits_processor=LogitsProcessorList(procs),
                              pad_token_id=tok.pad_token_id, **kw)

    # the recorder observes only: same tokens with and without it (greedy)
    rec = StopRankRecorder(fmt.eot_ids, eos_token_ids=[tok.eos_token_id])
    plain = run(do_sample=False)
    assert torch.equal(run(rec, do_sample=False), plain)
    n_prompt = batch.input_ids.shape[1]
    for i in range(len(texts)):
        think, _, emitted = fmt.split(plain[i, n_prompt:].tolist())
        ranks = rec.ranks_for(i)
        assert all(r >= 1 for r in ranks[: len(think)])  # greedy: EOT never on top before it stops
        if emitted:
            assert len(ranks) == len(think) + 1 and ranks[-1] == 0
    # TS with a cap inside temperature -> TS -> top-p, sampled
    cfg = ControllerConfig(name="ts", stop_temperature=0.05, max_thinking_tokens=10)
    proc = make_controller(cfg, tok, fmt)
    out = run(TemperatureLogitsWarper(0.7), proc, TopPLogitsWarper(0.95), do_sample=True, **neutral)
    prefix = tok.encode(S1_ANSWER_PREFIX, add_special_tokens=False)
    capped = 0
    for i in range(len(texts)):
        gen = out[i, n_prompt:].tolist()
        if tok.eos_token_id in gen:
            gen = gen[: gen.index(tok.eos_token_id) + 1]
        think, answer, emitted = fmt.split(gen)
        assert len(think) <= 10
        assert emitted or think[-1] == tok.eos_token_id  # else it ended (EOS) before the cap
        if proc.stats(i)["hit_cap"]:
            capped += 1
            assert answer[: len(prefix)] == prefix
    assert capped, [proc.stats(i) for i in range(len(texts))]


# ---------------------------------------------------------------------------------------------
# Settings


class _UnkTokenizer:
    """A tokenizer that knows no word but "ok" (unknown id 0)."""

    unk_token_id = 0
    eos_token_id = 2

    def encode(self, text, add_special_tokens=False):
        return [5 if w == "ok" else 0 for w in text.split()]

    def decode(self, ids, skip_special_tokens=False):
        return " ".join("ok" if i == 5 else "<unk>" for i in ids)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(name="ts", stop_temperature=0.0), "stop temperature"),
        (dict(name="ts", stop_temperature=-1.0), "stop temperature"),
        (dict(name="ts", stop_temperature=float("nan")), "stop temperature"),
        (dict(name="budget", max_thinking_tokens=0), "max_thinking_tokens"),
        (dict(name="budget", min_thinking_tokens=-3), "min_thinking_tokens"),
        (dict(name="budget", max_thinking_tokens=10, min_thinking_tokens=20), "min_thinking_tokens"),
        (dict(name="budget", num_ignore=-1), "num_ignore"),
        (dict(name="budget"), "needs"),
        (dict(name="budget", num_ignore=1, ignore_string=""), "ignore_string"),
        (dict(name="ts", stop_temperature=2.0, num_ignore=1), "budget"),
        (dict(name="budget", stop_temperature=2.0, max_thinking_tokens=5), "TS"),
        (dict(name="none", stop_temperature=0.5), "TS"),
        (dict(name="s2"), "unknown controller"),
    ],
)
def test_invalid_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ControllerConfig(**kwargs)


def test_invalid_processor_settings_and_unencodable_strings():
    with pytest.raises(ValueError, match="stop temperature"):
        TemperatureScaling([E], 0)
    with pytest.raises(ValueError, match="max_thinking_tokens"):
        BudgetForcing([E], max_thinking_tokens=-5)
    with pytest.raises(ValueError, match="min_thinking_tokens"):
        BudgetForcing([E], max_thinking_tokens=5, min_thinking_tokens=6, ignore_token_ids=[1])
    with pytest.raises(ValueError, match="ignore"):
        BudgetForcing([E], num_ignore=2)  # no ignore string
    with pytest.raises(ValueError, match="eot_token_ids"):
        BudgetForcing([], max_thinking_tokens=5)
    proc = BudgetForcing([E], max_thinking_tokens=5, answer_prefix_ids=[V + 10])
    with pytest.raises(ValueError, match="vocabulary"):
        first_call(proc, torch.zeros(1, V))
    from stopwise.thinking import ThinkingFormat

    tok, fmt = _UnkTokenizer(), ThinkingFormat("ok", (5,), "<think>")
    with pytest.raises(ValueError, match="ignore_string"):
        make_controller(ControllerConfig(name="budget", num_ignore=1, ignore_string="Wait"), tok, fmt)
    with pytest.raises(ValueError, match="answer_prefix"):
        make_controller(ControllerConfig(name="none", max_thinking_tokens=5), tok, fmt)
    cfg = ControllerConfig(name="none", max_thinking_tokens=5, answer_prefix="ok")
    assert isinstance(make_controller(cfg, tok, fmt), BudgetForcing)


def test_config_factory_and_parsing(tiny_model_dir):
    from transformers import AutoTokenizer, HfArgumentParser

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    fmt = detect_thinking_format(tok)
    assert make_controller(ControllerConfig(), tok, fmt) is None
    ts = ControllerConfig(name="ts", stop_temperature=2.0)
    a, b = make_controller(ts, tok, fmt), make_controller(ts, tok, fmt)
    assert isinstance(a, TemperatureScaling) and a is not b  # fresh per call
    assert a.policy.max_thinking_tokens is None
    capped = make_controller(ControllerConfig(name="ts", stop_temperature=2.0, max_thinking_tokens=64), tok, fmt)
    assert capped.policy.max_thinking_tokens == 64
    assert capped.policy.answer_prefix_ids == tuple(tok.encode(S1_ANSWER_PREFIX, add_special_tokens=False))
    bf = make_controller(ControllerConfig(name="budget", num_ignore=2, force_answer_prefix=False,
                                          max_thinking_tokens=9), tok, fmt, do_sample=False)
    assert bf.policy.ignore_ids == tuple(tok.encode("Wait", add_special_tokens=False))
    assert bf.policy.answer_prefix_ids == () and not bf.policy.do_sample
    assert bf.policy.eos_ids == {tok.eos_token_id}
    fs = BudgetForcing.from_strings(tok, "<|im_start|>answer", max_thinking_tokens=9, num_ignore=1)
    assert fs.policy.eot_ids == tuple(tok.encode("<|im_start|>answer", add_special_tokens=False))
    assert len(fs.policy.eot_ids) > 1 and fs.policy.ignore_ids == bf.policy.ignore_ids
    assert fs.policy.answer_prefix_ids == capped.policy.answer_prefix_ids
    half = torch.randn(2, V).to(torch.bfloat16)
    assert ts_log_probs(half, E, 2.0).dtype == torch.bfloat16
    d = ControllerConfig(name="budget", max_thinking_tokens=512, num_ignore=2).to_dict()
    assert d["max_thinking_tokens"] == 512 and d["answer_prefix"] == S1_ANSWER_PREFIX
    assert ControllerConfig(**d).label() == "budget-max512-ign2"
    (parsed,) = HfArgumentParser(ControllerConfig).parse_args_into_dataclasses(
        ["--name", "ts", "--stop_temperature", "1.5", "--max_thinking_tokens", "100"]
    )
    assert parsed.name == "ts" and parsed.stop_temperature == 1.5 and parsed.max_thinking_tokens == 100
    with pytest.raises(SystemExit):
        HfArgumentParser(ControllerConfig).parse_args_into_dataclasses(["--name", "bogus"])
