"""The grading worker process: runs math-verify in its main thread, item by item.

Started by `stopwise.grading.pool` as `python -c BOOT <this file> <fd>`: it is loaded by
file path, so it imports neither the parent's `__main__` nor torch, only math-verify.
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
# the comparison (runs in the worker)

_PARSE_CONFIG = None


def _configs():
    global _PARSE_CONFIG
    if _PARSE_CONFIG is None:
        from math_verify import ExprExtractionConfig, LatexExtractionConfig

        _PARSE_CONFIG = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
    return _PARSE_CONFIG


def _has_math_delimiters(text: str) -> bool:
    return "\\boxed" in text or any(ch == "$" and (i == 0 or text[i - 1] != "\\") for i, ch in enumerate(text))


def parse_gold(gold: str):
    from math_verify import parse

    text = gold if _has_math_delimiters(gold) else f"${gold}$"
    parsed = parse(text, extraction_config=_configs(), parsing_timeout=None)
    if not parsed:
        parsed = parse(f"\\boxed{{{gold}}}", extraction_config=_configs(), parsing_timeout=None)
    return parsed


def parse_prediction(pred: str):
    from math_verify import parse

    parsed = parse(f"\\boxed{{{pred}}}", extraction_config=_configs(), parsing_timeout=None)
    if not parsed:
        parsed = parse(f"${pred}$", extraction_config=_configs(), parsing_timeout=None)
    return parsed


def _verify(gold_parsed, pred_parsed) -> bool:
    from math_verify import verify

    if not gold_parsed or not pred_parsed:
        return False
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


def _split_top_level(text: str) -> list[str]:
    parts, depth, cur = [], 0, []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            nxt = text[i + 1]
            cur.append(text[i : i + 2])
            if nxt in "{[(":
                depth += 1
            elif nxt in "}])":
                depth = max(0, depth - 1)
            i += 2
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def _verify_list(candidate: str, gold: list[str]) -> bool:
    # 1) the whole list as one set: math-verify compares sets regardless of order
    if _verify(parse_gold(", ".join(gold)), parse_prediction(candidate)):
        return True
    # 2) part by part: as many parts as the gold, each gold part matched by its own part
    parts = _split_top_level(candidate)
    if len(parts) != len(gold):
        return False
    unused = [parse_prediction(p) for p in parts]
    for g in gold:
        gp = parse_gold(g)
        hit = next((k for k, pp in enumerate(unused) if pp is not None and _verify(gp, pp)), None)
        if hit is None:
            return False
        unused[hit] = None
    return True


def verify_answer(candidates: list[str], gold: str | list[str]) -> bool:
    """True if any candidate prediction equals the gold answer under math-verify.

    A list gold needs all its parts (see `stopwise.grading.is_correct`).
    """
    if isinstance(gold, list):
        if len(gold) == 1:
            gold = gold[0]
        else:
            return any(_verify_list(c, gold) for c in candidates)
    gold_parsed = parse_gold(gold)
    if not gold_parsed:
        return False
    return any(_verify(gold_parsed, parse_prediction(c)) for c in candidates)


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
