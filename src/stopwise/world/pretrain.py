"""A short pretraining of the demo student, before SFT: world text with short contexts.

Real students come to distillation pretrained, with attention heads that find and copy what
the context says. A student built from scratch has none, and every trace needs them: read the
operation of step C off the problem (a content-addressed lookup), copy the start value, carry
the last value to the conclusion. A small model learns such lookups abruptly after a plateau
whose length grows with the context (the distractors): measured, 1,000 SFT steps on the demo's
traces left 95% of the first pass's operations misread on two seeds, and the start value was
copied only after ~750 steps. So the student first reads short world text, one tiny problem
(1-3 steps, named by a window of consecutive letters so that every name is seen) per document,
worked hastily and sometimes carefully, every token in the loss:

    x=4, E+5, D−7.
    x=4
    E +5 → 9
    D −7 → 2
    So the result is 2.
    x=4
    E +5: 4 + 5 = 9
    D −7: 9 - 7 = 2
    So the result is 2.

500 steps of next-token training on them (TRL `SFTTrainer`, plain text) form the lookup and
the copies, and SFT then starts from a student that can read. Whether they did is measured, not
assumed: on held-out documents the student must read `lookup_target` (0.75) of the operations
after a step name right (`lookup_accuracy`, teacher-forced), or pretraining goes on in rounds of
250 steps on fresh documents (2 at most). How fast the lookup forms depends on rounding:
with the loss computed another way (the model's own cross-entropy for TRL's fused one, the same
loss), 500 steps left seed 1 reading 0.50 of them (seeds 0, 2, 3: 0.82-0.98) and seed 4 0.73,
and seed 1's SFT student failed (dev accuracy 0.275, test 0.335; a fourth SFT epoch: 0.30-0.34).
Its two further rounds read 0.62, then 0.88, and its student 0.94 dev / 0.96 test; seed 4's one
round 1.00, its student 0.935 / 0.94. The default pretraining's seeds 0-4 read 0.82-1.00 after
500 steps: no further round, the same students as before the rounds.

The same may hold for the level sentence of a prompt (short / medium / long): where the thinking
stops is decided hundreds of tokens after it. Measured on seed 0 (level-tagged SFT with
`TeacherConfig.level_rule` 'checks'): without level documents, P(another check) moved by < 0.01
between levels after SFT (medium and long, whose sentences end alike, gave the same value to
three decimals); plain-text level documents were read perfectly after pretraining but SFT
erased it; level documents in the chat turns SFT uses (`level_document`, `level_share` 0.5)
survived SFT (P(another check) after one check 0.02 / 0.87 / 0.96; dev thinking 87 / 143 / 234
tokens) but left the lookups unformed (dev accuracy 0.30 instead of 0.99), and at share 0.2 the
levels barely separated (short 100, medium = long 123 tokens). With share 0.33 over 750
steps (so that the plain documents still get their 500 steps' worth) both held: dev accuracy
0.965 without a level, thinking 90 / 147 / 260 tokens at short / medium / long (accuracy 0.995 /
1.0 / 0.955), P(another check) after one check 0.005 / 0.96 / 0.98, after two 0.002 / 0.03 /
0.86. But that pretraining took 555 s on one thread (the default one about 150 s on two), over the
demo's time budget. Off by default (`level_share` 0).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from stopwise.io import write_json
from stopwise.prompts import PromptConfig
from stopwise.recipes import option
from stopwise.world.problems import (
    DEFAULT_MAX_STEPS,
    random_problem,
    start_line,
    step_label,
    step_op,
)
from stopwise.world.teacher import (
    DEFAULT_LEVEL_CHECKS,
    TeacherConfig,
    careful_line,
    conclusion,
    with_checks,
    write_trace,
)

DONE_FILE = "pretrain.json"


@dataclass
class PretrainConfig:
    """Lookup-drill pretraining of the demo student."""

    steps: int = option(500, "Optimizer steps (0: no pretraining).")
    batch_size: int = option(32, "Documents per step.")
    learning_rate: float = option(5e-3, "Peak learning rate (cosine schedule).")
    drill_share: float = option(0.0, "Share of documents that are lookup drills (named steps, then "
                                     "each looked up in random order): the densest lookup signal.")
    max_checks: int = option(3, "Most careful passes after the hasty one in a document (0..this "
                                "many): each restates the start, which teaches the student to copy "
                                "it from afar.")
    level_share: float = option(0.0, "Share of documents that are level documents: a small problem "
                                     "in the demo's chat turns, its prompt stating a level, the "
                                     "teacher's trace checked level_checks[level] times (so the "
                                     "student may learn to read the level where the stop is "
                                     "decided; see the module notes for what it measured).")
    level_checks: dict[str, int] = option(DEFAULT_LEVEL_CHECKS, "Re-verifications of a level document's "
                                                              "trace at each level (checked as "
                                                              "TeacherConfig.level_checks).")
    max_steps_per_document: int = option(3, "Largest problem in a document (1..this many steps): "
                                            "short contexts form the lookups fastest (with up to 6 "
                                            "steps, 500 steps formed none).")
    lookup_target: float = option(0.75, "Rounds of extra_steps more while the student reads fewer than "
                                        "this share of operations right (`lookup_accuracy`); 0: never.")
    extra_steps: int = option(250, "Optimizer steps of each further round.")
    max_extra_rounds: int = option(2, "Most further rounds.")

    def __post_init__(self):
        if self.steps < 0 or self.batch_size <= 0 or self.learning_rate <= 0:
            raise ValueError(f"PretrainConfig needs steps >= 0, batch_size > 0, learning_rate > 0; got {self}")
        if not 0 <= self.drill_share <= 1:
            raise ValueError(f"PretrainConfig.drill_share must be in [0, 1], got {self.drill_share}")
        if not 0 <= self.level_share <= 1:
            raise ValueError(f"PretrainConfig.level_share must be in [0, 1], got {self.level_share}")
        try:  # the teacher writes the level documents: its rule for level_checks
            TeacherConfig(level_checks=self.level_checks)
        except ValueError as err:
            raise ValueError(f"PretrainConfig.level_checks: {err}") from None
        if not 0 <= self.lookup_target <= 1:
            raise ValueError(f"PretrainConfig.lookup_target must be in [0, 1], got {self.lookup_target}")
        if self.extra_steps <= 0 or self.max_extra_rounds < 0:
            raise ValueError(f"PretrainConfig needs extra_steps > 0 and max_extra_rounds >= 0; got "
                             f"{self.extra_steps}, {self.max_extra_rounds}")
        if not 1 <= self.max_steps_per_document <= DEFAULT_MAX_STEPS:
            raise ValueError(f"PretrainConfig.max_steps_per_document must be in 1..{DEFAULT_MAX_STEPS}, "
                             f"got {self.max_steps_per_document}")


def drill(rng: random.Random, max_steps: int, n_names: int = DEFAULT_MAX_STEPS) -> str:
    """A lookup drill: named steps, then each looked up once, in random order."""
    n = rng.randint(1, max_steps)
    first = rng.randint(0, max(0, n_names - n))  # the last step's name: A, or later letters
    p = random_problem(rng, n)
    table = [(step_label(first + n - i), step_op(op, k)) for i, (op, k) in enumerate(p.steps, 1)]
    queries = rng.sample(table, len(table))
    return ("Steps: " + ", ".join(f"{name}{op}" for name, op in table) + ".\n"
            + "".join(f"{name} {op}\n" for name, op in queries))


def document(rng: random.Random, max_steps: int, n_names: int = DEFAULT_MAX_STEPS, max_checks: int = 1) -> str:
    """One pretraining document: a problem of 1..max_steps steps named by a random window of
    the first `n_names` letters, worked hastily, then (half of the time) carefully."""
    n = rng.randint(1, max_steps)
    p = random_problem(rng, n)
    first = rng.randint(0, max(0, n_names - n))  # the last step's name: A, or later letters
    names = [step_label(first + n - i) for i in range(1, n + 1)]  # counting down, as problems do
    xs = p.values()
    stated = ", ".join(f"{name}{step_op(op, k)}" for name, (op, k) in zip(names, p.steps))
    lines = [f"{start_line(p.start)}, {stated}.", start_line(p.start)]
    lines += [f"{name} {step_op(op, k)} → {x}" for name, (op, k), x in zip(names, p.steps, xs[1:])]
    lines.append(conclusion(xs[-1]))
    for _ in range(rng.randint(0, max_checks)):  # careful passes, each from the start again
        lines.append(start_line(p.start))
        lines += [careful_line(name, x, op, k) for name, x, (op, k) in zip(names, xs, p.steps)]
        lines.append(conclusion(xs[-1]))
    return "\n".join(lines) + "\n"


def level_document(rng: random.Random, max_steps: int, level_checks: dict[str, int]) -> list[dict]:
    """A level document: a small problem (1..max_steps steps) in the demo's own chat turns, its
    prompt stating a level (uniform), the teacher's trace re-verified level_checks[level] times
    (`TeacherConfig.level_rule` 'checks')."""
    level = rng.choice(sorted(level_checks))
    teacher = TeacherConfig()
    trace = write_trace(random_problem(rng, rng.randint(1, max_steps)), teacher, rng)
    trace = with_checks(trace, level_checks[level], rng, teacher.max_checks)
    return trace.messages(PromptConfig(level=level))


def lookup_positions(tokens: list[str]) -> list[int]:
    """Positions of the step names that open a worked line (`E` after a newline): the token
    after each is the step's operation, read off the document's first line."""
    return [i for i in range(1, len(tokens) - 1)
            if tokens[i - 1] == "\n" and len(tokens[i]) == 1 and tokens[i].isupper()]


def lookup_accuracy(model, tokenizer, seed: int, n_documents: int = 200,
                    max_steps: int = 3, max_checks: int = 3) -> float:
    """Teacher-forced share of operations the model predicts right after a step name, on
    `n_documents` documents of a generator of their own (none of them trained on)."""
    import torch

    rng = random.Random(f"stopwise-pretrain-probe/{seed}")
    hits = total = 0
    model.eval()
    for _ in range(n_documents):
        ids = tokenizer(document(rng, max_steps, max_checks=max_checks), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            pred = model(torch.tensor([ids])).logits[0].argmax(-1).tolist()
        for i in lookup_positions([tokenizer.decode([t]) for t in ids]):
            hits += pred[i] == ids[i + 1]
            total += 1
    return hits / total if total else 0.0


def pretrain_student(model_dir: str | Path, config: PretrainConfig, seed: int = 0,
                     num_threads: int | None = None, progress: bool = True) -> dict:
    """Pretrain the student in `model_dir` in place; skipped when already done there.

    Rounds: `config.steps`, then up to `max_extra_rounds` of `extra_steps` while
    `lookup_accuracy` < `lookup_target`. Each finished round is kept in `pretrain/round-K`
    (its accuracy in `pretrain/rounds.json`), so a killed pretraining resumes at the round it
    was in and ends where an uninterrupted one does; `model_dir` gets the last round's weights.
    Why: see the module notes.
    """
    model_dir = Path(model_dir)
    done = model_dir / DONE_FILE
    if done.exists():
        return json.loads(done.read_text())
    if config.steps == 0:
        return {"steps": 0}
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if num_threads:
        torch.set_num_threads(num_threads)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    work = model_dir / "pretrain"
    log = work / "rounds.json"
    rounds = json.loads(log.read_text()) if log.exists() else []
    while not rounds or (rounds[-1]["lookup_accuracy"] < config.lookup_target
                         and len(rounds) <= config.max_extra_rounds):
        k = len(rounds)
        start = work / f"round-{k - 1}" if k else model_dir
        model = AutoModelForCausalLM.from_pretrained(str(start), dtype=torch.float32)
        steps = config.steps if k == 0 else config.extra_steps
        # round 0's documents are those of a pretraining without rounds: the same student
        loss = train_round(model, tokenizer, config, steps, f"stopwise-pretrain/{seed}" + (f"/round-{k}" if k else ""),
                           seed, work / f"round-{k}", progress)
        accuracy = lookup_accuracy(model, tokenizer, seed)
        rounds.append({"steps": steps, "last_loss": loss, "lookup_accuracy": accuracy})
        write_json(log, rounds)
        print(f"[stopwise] pretraining round {k}: {steps} steps, lookup accuracy {accuracy:.3f} "
              f"(target {config.lookup_target:g})", flush=True)
    final = AutoModelForCausalLM.from_pretrained(str(work / f"round-{len(rounds) - 1}"), dtype=torch.float32)
    final.save_pretrained(str(model_dir))
    result = {**asdict(config), "seed": seed, "last_loss": rounds[-1]["last_loss"], "rounds": rounds}
    write_json(done, result)
    return result


def train_round(model, tokenizer, config: PretrainConfig, steps: int, rng_key: str, seed: int,
                out: Path, progress: bool) -> float | None:
    """`steps` optimizer steps of next-token training on fresh documents (TRL `SFTTrainer`,
    plain text, a cosine schedule of its own); the model is saved to `out`."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    rng = random.Random(rng_key)
    texts = [drill(rng, config.max_steps_per_document) if rng.random() < config.drill_share
             else level_document(rng, config.max_steps_per_document, config.level_checks)
             if config.level_share and rng.random() < config.level_share
             else document(rng, config.max_steps_per_document, max_checks=config.max_checks)
             for _ in range(steps * config.batch_size)]
    # level documents are chat turns: rendered as SFT will render them (every token in the loss)
    texts = [t if isinstance(t, str) else tokenizer.apply_chat_template(t, tokenize=False).rstrip("\n")
             for t in texts]
    args = SFTConfig(
        output_dir=str(out.parent / "trainer"),
        max_steps=steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        adam_beta2=0.95,
        seed=seed,
        data_seed=seed,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        save_strategy="no",
        logging_steps=max(1, steps // 5),
        report_to="none",
        disable_tqdm=not progress,
        dataloader_pin_memory=False,
    )
    trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer,
                         train_dataset=Dataset.from_dict({"text": texts}))
    trainer.train()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # what a save killed midway left
    trainer.save_model(str(tmp))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)  # a round is there whole or not at all
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return losses[-1] if losses else None
