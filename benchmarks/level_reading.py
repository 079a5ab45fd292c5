"""Does a demo student read the level sentence of its prompt? On held-out level documents (the
pretraining's `level_document`: a small problem, its prompt stating short / medium / long, the
trace re-verified 1 / 2 / 4 times), at each conclusion of the thinking after the first, the
student's P(another check) ("Wait" / "Hmm") against P(end of thinking) is compared with what the
level says; the share it gets right is its level reading (1.0: it reads the level; about 0.5:
it ignores it), then P(another check) per level and number of checks made.

    python benchmarks/level_reading.py runs/levels/seed-2/sft/init runs/levels/seed-2/sft

Meant for students trained with `teacher: {level_rule: checks}` (the checks the documents use).
"""

from __future__ import annotations

import argparse
import random
import re

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from stopwise.prompts import PromptConfig
from stopwise.world.pretrain import PretrainConfig, level_document
from stopwise.world.teacher import CHECK_OPENERS

CONCLUSION = re.compile(r"So the result is [^\n]*\n")


def level_reading(model_dir: str, n_documents: int = 100, seed: str = "level-probe") -> tuple[float, dict]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    another = {tokenizer.encode(opener, add_special_tokens=False)[0] for opener in CHECK_OPENERS}
    eot = tokenizer.encode("</think>", add_special_tokens=False)[0]
    config = PretrainConfig()
    rng = random.Random(seed)
    hits = total = 0
    p_another: dict[tuple[str, int], list[float]] = {}
    for _ in range(n_documents):
        messages = level_document(rng, config.max_steps_per_document, config.level_checks)
        level = next(lv for lv, sentence in PromptConfig().level_instructions.items()
                     if sentence in messages[0]["content"])
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        for checks, match in enumerate(CONCLUSION.finditer(text)):
            if checks == 0:
                continue  # after the hasty pass every level checks
            ids = tokenizer(text[:match.end()], add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                probs = model(torch.tensor([ids])).logits[0, -1].softmax(-1)
            go_on, stop = float(sum(probs[i] for i in another)), float(probs[eot])
            hits += (go_on > stop) == (not text[match.end():].startswith("</think>"))
            total += 1
            p_another.setdefault((level, checks), []).append(go_on / (go_on + stop))
    return hits / total, {key: sum(v) / len(v) for key, v in sorted(p_another.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model directories (a pretrained init, an SFT student)")
    parser.add_argument("--documents", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for model_dir in args.models:
        reading, p_another = level_reading(model_dir, args.documents)
        print(f"{model_dir}: level reading {reading:.3f}")
        for level in PretrainConfig().level_checks:
            cells = [f"after {k}: {p:.2f}" for (lv, k), p in p_another.items() if lv == level]
            print(f"  P(another check) {level:<6} " + "  ".join(cells))


if __name__ == "__main__":
    main()
