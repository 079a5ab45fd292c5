"""Measure a demo-world student: accuracy, length of right vs wrong answers, stop failures,
repetition, and how much of its thinking is redundant re-verification.

Plain batched `model.generate` (left padding), independent of the evaluation harness, so the
world can be checked on its own. Redundancy is measured, not assumed: each completion is cut
where its first re-verification starts ("Wait, let me ..." / "Hmm, let me ..."), `</think>`
is appended, the student writes its answer greedily, and the cut completion is graded again.
The tokens removed that way, at unchanged accuracy, are the removable share.
"""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path

from stopwise.prompts import PromptConfig, build_prompt
from stopwise.thinking import detect_thinking_format

BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
CHECK_START = re.compile(r"(Wait|Hmm), let me ")


def boxed_answer(text: str) -> str | None:
    found = BOXED.findall(text)
    return found[-1].strip() if found else None


def grade(completion: str, gold: str, eot: str = "</think>") -> tuple[str | None, bool]:
    """(prediction, correct): the last box of the answer phase against the gold number."""
    if eot not in completion:
        return None, False
    pred = boxed_answer(completion.split(eot, 1)[1])
    return pred, pred is not None and pred == str(gold).strip()


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float = 0.0,
             top_p: float = 0.95, batch_size: int = 64, seed: int = 0) -> list[list[int]]:
    """Completion ids (up to and including EOS, no padding) for each prompt."""
    import torch

    tokenizer.padding_side = "left"
    eos = tokenizer.eos_token_id
    out: list[list[int]] = []
    torch.manual_seed(seed)
    # Longest prompts first: less padding, and the slowest batch is seen early.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    results: dict[int, list[int]] = {}
    for b in range(0, len(order), batch_size):
        idx = order[b : b + batch_size]
        enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                        add_special_tokens=False)
        kwargs = dict(max_new_tokens=max_new_tokens, eos_token_id=eos,
                      pad_token_id=tokenizer.pad_token_id)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.no_grad():
            gen = model.generate(**enc, **kwargs)
        for row, i in zip(gen[:, enc["input_ids"].shape[1] :].tolist(), idx):
            if eos in row:
                row = row[: row.index(eos) + 1]
            else:
                row = [t for t in row if t != tokenizer.pad_token_id]
            results[i] = row
    out = [results[i] for i in range(len(prompts))]
    return out


def repeated_line_share(thinking: str) -> float:
    """Share of thinking lines (sentences) that repeat an earlier one verbatim."""
    parts = [s.strip() for s in re.split(r"(?<=\.)\s+|\n", thinking) if s.strip()]
    seen: set[str] = set()
    rep = 0
    for s in parts:
        rep += s in seen
        seen.add(s)
    return rep / len(parts) if parts else 0.0


def measure_student(model_dir: str | Path, problems: list[dict], max_new_tokens: int,
                    temperature: float = 0.0, top_p: float = 0.95, batch_size: int = 64,
                    seed: int = 0, redundancy: bool = True, level: str | None = None) -> dict:
    """Generate one completion per problem (dicts with problem, answer, difficulty) and
    summarise. Returns {"summary": {...}, "samples": [...]}."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    fmt = detect_thinking_format(tokenizer)
    prompt_cfg = PromptConfig(level=level)
    prompts = [build_prompt(tokenizer, p["problem"], fmt, prompt_cfg) for p in problems]
    t0 = time.time()
    comps = generate(model, tokenizer, prompts, max_new_tokens, temperature, top_p, batch_size, seed)
    gen_seconds = time.time() - t0
    samples = []
    for p, ids in zip(problems, comps):
        thinking_ids, answer_ids, eot_emitted = fmt.split(ids)
        text = tokenizer.decode(ids, skip_special_tokens=True)
        pred, ok = grade(text, p["answer"], fmt.eot)
        thinking = tokenizer.decode(thinking_ids, skip_special_tokens=True)
        hit_cap = len(ids) >= max_new_tokens and ids[-1] != tokenizer.eos_token_id
        samples.append({
            "id": p.get("id"), "difficulty": p.get("difficulty"), "gold": str(p["answer"]),
            "prediction": pred, "correct": ok, "n_tokens": len(ids),
            "n_thinking_tokens": len(thinking_ids), "n_answer_tokens": len(answer_ids),
            "eot_emitted": eot_emitted, "truncated": hit_cap and not eot_emitted, "hit_cap": hit_cap,
            "n_checks": len(CHECK_START.findall(thinking)),
            "repeated_line_share": repeated_line_share(thinking),
            "completion": text,
        })
    summary = summarise(samples)
    summary.update(temperature=temperature, max_new_tokens=max_new_tokens, n=len(samples),
                   generation_seconds=round(gen_seconds, 1))
    if redundancy:
        summary.update(measure_redundancy(model, tokenizer, fmt, prompts, problems, samples,
                                          max_new_tokens, batch_size))
    return {"summary": summary, "samples": samples}


def _mean(xs):
    return round(statistics.mean(xs), 2) if xs else None


def summarise(samples: list[dict]) -> dict:
    right = [s for s in samples if s["correct"]]
    wrong = [s for s in samples if not s["correct"]]
    by_diff: dict = {}
    for s in samples:
        by_diff.setdefault(s["difficulty"], []).append(s)
    out = {
        "accuracy": _mean([float(s["correct"]) for s in samples]),
        "mean_tokens": _mean([s["n_tokens"] for s in samples]),
        "mean_thinking_tokens": _mean([s["n_thinking_tokens"] for s in samples]),
        "mean_thinking_tokens_correct": _mean([s["n_thinking_tokens"] for s in right]),
        "mean_thinking_tokens_wrong": _mean([s["n_thinking_tokens"] for s in wrong]),
        "truncation_rate": _mean([float(s["truncated"]) for s in samples]),
        "mean_checks": _mean([s["n_checks"] for s in samples]),
        "mean_repeated_line_share": _mean([s["repeated_line_share"] for s in samples]),
        "by_difficulty": {
            d: {"n": len(v), "accuracy": _mean([float(s["correct"]) for s in v]),
                "mean_tokens": _mean([s["n_tokens"] for s in v])}
            for d, v in sorted(by_diff.items(), key=lambda kv: (kv[0] is None, kv[0]))
        },
    }
    if right and wrong:
        out["wrong_over_correct_thinking"] = round(
            out["mean_thinking_tokens_wrong"] / max(out["mean_thinking_tokens_correct"], 1e-9), 2)
    return out


def measure_redundancy(model, tokenizer, fmt, prompts, problems, samples, max_new_tokens,
                       batch_size) -> dict:
    """Cut each completion before its first re-verification, close the thinking, let the
    student answer greedily; compare accuracy and tokens with the full completions."""
    cut_prompts, cut_len = [], []
    for prompt, s in zip(prompts, samples):
        thinking = s["completion"].split(fmt.eot, 1)[0]
        m = CHECK_START.search(thinking)
        kept = thinking[: m.start()] if m else thinking
        kept = kept.rstrip() + "\n"
        cut_prompts.append(prompt + kept + fmt.eot + "\n\n")
        cut_len.append(len(tokenizer.encode(kept, add_special_tokens=False)) + len(fmt.eot_ids))
    answers = generate(model, tokenizer, cut_prompts, 64, 0.0, batch_size=batch_size)
    correct, tokens = [], []
    for s, n_kept, ans_ids in zip(samples, cut_len, answers):
        ans = tokenizer.decode(ans_ids, skip_special_tokens=True)
        pred = boxed_answer(ans)
        correct.append(pred is not None and pred == s["gold"])
        tokens.append(n_kept + len(ans_ids))
    full = statistics.mean(s["n_tokens"] for s in samples)
    cut = statistics.mean(tokens)
    return {
        "cut_accuracy": _mean([float(c) for c in correct]),
        "cut_mean_tokens": round(cut, 2),
        "removable_share": round(1 - cut / full, 3),
    }
