"""The grading worker process: runs math-verify in its main thread, item by item.

Started by `stopwise.grading.pool` as `python -c BOOT <this file> <fd>`: it is loaded by
file path, so it imports neither the parent's `__main__` nor torch, only math-verify. It
extracts and compares answers (`grade_answer`); the parent only cuts out the answer phase.
Protocol over the socket `fd` (pickled messages, `multiprocessing.connection`):

    worker -> parent  ("ready", pid)                       once, after the imports
    parent -> worker  (tasks, soft_timeout)                 tasks: [(key, "mod:func", args), ...]
    worker -> parent  (key, status, value)                  one per task, in order;
                                                            status "ok" | "timeout" | "error"
    parent -> worker  None                                  exit

Each task runs under a SIGALRM interval timer (`soft_timeout` seconds, the worker's main
thread, so the signal works); math-verify's own signal timeouts are switched off so that
they do not cancel ours. Code stuck in C, where no signal handler runs, is killed by the
parent (the hard timeout).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal

_armed = False


class SoftTimeout(BaseException):
    """Raised in the worker when a task overruns (BaseException: math-verify catches Exception)."""


def _on_alarm(signum, frame):
    if _armed:
        raise SoftTimeout()


def _arm(seconds: float) -> None:
    global _armed
    _armed = True
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))


def _disarm() -> None:
    global _armed
    _armed = False
    signal.setitimer(signal.ITIMER_REAL, 0)


# ---------------------------------------------------------------------------------------
# the grading (runs in the worker)

_PARSE_CONFIG = None


def _configs():
    """math-verify's own LaTeX and expression extraction, boxed answers first (priority 0: a
    `\\boxed{}` beats "answer: ..." and plain LaTeX; it ties only with the Minerva form "The
    final answer is X. I hope it is correct.", where the rightmost of the two wins)."""
    global _PARSE_CONFIG
    if _PARSE_CONFIG is None:
        from math_verify import ExprExtractionConfig, LatexExtractionConfig

        _PARSE_CONFIG = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
    return _PARSE_CONFIG


def _parse(text: str) -> list:
    from math_verify import parse

    return parse(text, extraction_config=_configs(), parsing_timeout=None)


def _has_value(parsed) -> bool:
    """Whether math-verify read a value (a sympy object), not only its string fallback."""
    return any(not isinstance(x, str) for x in parsed)


def _has_math_delimiters(text: str) -> bool:
    return "\\boxed" in text or any(ch == "$" and (i == 0 or text[i - 1] != "\\") for i, ch in enumerate(text))


_GOLDS: dict = {}


def parse_gold(gold: str | list[str]) -> list:
    """The gold answer as math-verify reads it: wrapped as `$gold$` (as is when it already has
    `$` or `\\boxed`), then as `\\boxed{gold}`; a list gold is one set of all its parts."""
    key = tuple(gold) if isinstance(gold, list) else gold
    if key in _GOLDS:
        return _GOLDS[key]
    text = ", ".join(gold) if isinstance(gold, list) else gold
    parsed = _parse(text if _has_math_delimiters(text) else f"${text}$")
    if not _has_value(parsed):
        boxed = _parse(f"\\boxed{{{text}}}")
        if _has_value(boxed) or not parsed:
            parsed = boxed
    if len(_GOLDS) > 10_000:
        _GOLDS.clear()
    _GOLDS[key] = parsed
    return parsed


def _verify(gold_parsed, pred_parsed) -> bool:
    from math_verify import verify

    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def grade_answer(context: str | None, boxes: str | None, gold: str | list[str],
                 alternatives: list[str] = ()) -> tuple:
    """Grade an answer: returns (prediction, correct, status).

    `boxes`: the final boxes alone (e.g. "\\boxed{1} and \\boxed{2}"), or None; `context`:
    the answer phase they stand in, or None (a completion cut at the cap: boxes only).
    With readable boxes, math-verify reads the context, where they come first (priority 0;
    a later Minerva "The final answer is X. I hope it is correct." ties and wins); with
    boxes math-verify reads no value from, those decide (compared as strings), so no
    lower-priority fallback (a number after the box) can stand in for them; without boxes,
    math-verify's own extraction of the context decides. `alternatives` (one box per part
    of a gold with several parts) are tried when that answer is wrong.
    status: "verified", "no_answer" (math-verify found nothing) or "gold_unparsed"
    (math-verify reads no value from the gold; compared as strings).
    """
    gold_parsed = parse_gold(gold)
    status = "verified" if _has_value(gold_parsed) else "gold_unparsed"
    decided = _parse(boxes) if boxes else []
    if context and (not boxes or _has_value(decided)):
        in_context = _parse(context)
        if _has_value(in_context) or not decided:
            decided = in_context
    prediction = _prediction(decided) if decided else None
    correct = bool(decided) and _verify(gold_parsed, decided)
    for text in alternatives:
        if correct:
            break
        parsed = _parse(text)
        if _has_value(parsed) and _verify(gold_parsed, parsed):
            correct, prediction = True, _prediction(parsed)
    if prediction is None and status == "verified":
        status = "no_answer"
    return prediction, correct, status


def _prediction(parsed) -> str:
    """The answer as math-verify extracted it: its string (the LaTeX it read), else the value."""
    strings = [x for x in parsed if isinstance(x, str)]
    return strings[0] if strings else str(parsed[0])


# ---------------------------------------------------------------------------------------
# the loop


def _resolve(spec: str, cache: dict):
    fn = cache.get(spec)
    if fn is None:
        if spec.startswith(":"):
            fn = globals()[spec[1:]]
        else:
            mod, _, name = spec.partition(":")
            fn = getattr(importlib.import_module(mod), name)
        cache[spec] = fn
    return fn


def main(fd: int) -> None:
    from multiprocessing.connection import Connection

    conn = Connection(fd)
    # The protocol has its own socket; keep stray prints of libraries off the parent's stdout.
    with contextlib.suppress(OSError):
        os.dup2(2, 1)
    logging.disable(logging.WARNING)  # math-verify warns on every parse when its timeout is off
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    import math_verify  # noqa: F401 - warm the imports before saying ready

    _configs()
    cache: dict = {}
    conn.send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        tasks, soft_timeout = msg
        for key, spec, args in tasks:
            try:
                _arm(soft_timeout)
                try:
                    value = _resolve(spec, cache)(*args)
                finally:
                    _disarm()
                out = (key, "ok", value)
            except SoftTimeout:
                out = (key, "timeout", None)
            except Exception as err:  # noqa: BLE001 - any failure is a wrong answer, not a crash
                out = (key, "error", f"{type(err).__name__}: {str(err)[:200]}")
            try:
                conn.send(out)
            except (OSError, ValueError):
                return
            except Exception:  # an unpicklable value
                conn.send((key, "error", "unpicklable result"))
