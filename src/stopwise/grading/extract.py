"""Finding the answer in a completion: the answer phase, boxed answers, fallbacks.

Everything here is plain string work (linear in the text, no backtracking-prone
patterns), so it runs in the calling process; only the math-verify comparison goes to
the worker pool (see `stopwise.grading.pool`).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

DEFAULT_EOT = "</think>"

_FINAL_ANSWER_RE = re.compile(r"final\s+answer", re.IGNORECASE)
_ANSWER_IS_RE = re.compile(r"\banswer\s+(?:is|=)", re.IGNORECASE)
_NUMBER_RE = re.compile(r"(?<![\d.])-?\d+(?:,\d{3})+(?:\.\d+)?(?![\d,])|(?<![\d.])-?\d+(?:\.\d+)?(?:/\d+)?")
_THOUSANDS_RE = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_INT_RE = re.compile(r"[+-]?\d+")
_DECIMAL_RE = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)")
_MATH_SEGMENT_RE = re.compile(r"\$\$(.+?)\$\$|(?<!\\)\$(.+?)(?<!\\)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_HOPE = "i hope it is correct."
_MAX_SEGMENT_SEARCH = 4000  # longer "answers" are not searched for $...$ (quadratic worst case)


def answer_phase(completion: str, eot: str | None = DEFAULT_EOT) -> str:
    """The text after the first end-of-thinking delimiter, or the whole text without one.

    `eot=None` (or "") means the completion has no thinking phase: the whole text is
    the answer phase.
    """
    if not eot:
        return completion
    pos = completion.find(eot)
    if pos < 0:
        return completion
    return completion[pos + len(eot) :]


def _match_brace(text: str, start: int, open_ch: str = "{", close_ch: str = "}") -> int:
    """Index of the bracket closing the one at `start`, or -1; backslash-escaped ones are skipped."""
    depth = 0
    i, n = start, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == open_ch:
            depth += 1
        elif ch == close_ch:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


_BOX_TOKEN_RE = re.compile(r"\\\\|\\(?:boxed|fbox|framebox)(?![A-Za-z])|\\[{}]|[{}]")
_BARE_TOKEN_RE = re.compile(r"[^\s$]+")


def find_boxed(text: str) -> list[str]:
    """Contents of every `\\boxed{..}`, `\\fbox{..}` and `\\framebox{..}` in order of appearance.

    Nested braces are matched (escaped ones are not braces); `\\boxed 5` (a bare token) is
    read too; unterminated boxes (a truncated completion) are skipped. One pass over the
    braces of the text, so a degenerate completion cannot make it slow.
    """
    found: list[tuple[int, str]] = []
    stack: list[tuple[int, int] | None] = []  # per open brace: (box start, content start) or None
    box_brace = -1  # position of the "{" that opens the box just seen
    box_start = -1
    n = len(text)
    for m in _BOX_TOKEN_RE.finditer(text):
        tok = m.group(0)
        if tok == "{":
            stack.append((box_start, m.end()) if m.start() == box_brace else None)
        elif tok == "}":
            top = stack.pop() if stack else None
            if top is not None:
                content = text[top[1] : m.start()].strip()
                if content:
                    found.append((top[0], content))
        elif len(tok) > 2:  # \boxed, \fbox, \framebox
            i = m.end()
            while i < n and text[i] in " \t":
                i += 1
            while i < n and text[i] == "[":  # \framebox[width][pos]{...}
                j = text.find("]", i, i + 100)
                if j < 0:
                    break
                i = j + 1
            if i < n and text[i] == "{":
                box_brace, box_start = i, m.start()
            elif i > m.end() and i < n:  # `\boxed 5`: the next token
                bare = _BARE_TOKEN_RE.match(text, i)
                if bare:
                    found.append((m.start(), bare.group(0)))
        # else: an escaped brace or a double backslash, not structure
    found.sort(key=lambda x: x[0])
    return [c for _, c in found]


def _clean(ans: str) -> str | None:
    """Strip math delimiters, trailing punctuation and politeness from an extracted answer."""
    ans = ans.strip()
    if ans.lower().endswith(_HOPE):
        ans = ans[: -len(_HOPE)].strip()
    seg = _MATH_SEGMENT_RE.search(ans) if len(ans) <= _MAX_SEGMENT_SEARCH else None
    if seg:
        ans = next(g for g in seg.groups() if g is not None)
    ans = ans.strip()
    inner = find_boxed(ans)
    if inner:
        ans = inner[-1]
    ans = ans.strip().rstrip(".").strip()
    while ans.startswith("$") and ans.endswith("$") and len(ans) > 1:
        ans = ans[1:-1].strip()
    return _unwrap_format(ans) or None


_FORMAT_RE = re.compile(r"\\(textbf|mathbf|boldsymbol|bf|mathrm|textrm|text|mbox)\s*\{")


def _unwrap_format(ans: str) -> str:
    """Drop a formatting command around the whole answer: `\\textbf{(073)}` -> `073`.

    `\\text{...}` is unwrapped only around letter-free content (`\\text{(C)}` stays, it is a
    choice); a number in parentheses loses them (AIME style "(073)").
    """
    for _ in range(4):
        m = _FORMAT_RE.match(ans)
        if not m:
            break
        end = _match_brace(ans, m.end() - 1)
        if end != len(ans) - 1:
            break
        inner = ans[m.end() : end].strip()
        if m.group(1) in ("text", "mbox", "textrm", "mathrm") and re.search(r"[A-Za-z]", inner):
            break
        ans = inner
    num = re.fullmatch(r"\(\s*(-?\d+(?:\.\d+)?)\s*\)", ans)
    return num.group(1) if num else ans


def _after_phrase(text: str, pattern: re.Pattern) -> str | None:
    """The sentence after the last match of `pattern` (the next non-empty line when it ends the line)."""
    last = None
    for last in pattern.finditer(text):  # noqa: B007 - we want the last match
        pass
    if last is None:
        return None
    rest = text[last.end() :]
    rest = re.sub(r"^[\s*_:]*(?:is\b|=)?[\s*_:]*", "", rest, count=1)
    lines = [ln for ln in rest.split("\n") if ln.strip()]
    if not lines:
        return None
    line = lines[0].strip()[:_MAX_SEGMENT_SEARCH]
    if _MATH_SEGMENT_RE.search(line) is None:
        line = re.split(r"\.\s|\.$|;\s", line, maxsplit=1)[0].strip()
        line = re.sub(r"^\\?\$(?=\s*\d)", "", line)  # "$18" (dollars), not math
        # "12 apples", "1,234 dollars": the number, not the words
        num = re.match(r"(-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?)\s+[A-Za-z]", line)
        if num:
            line = num.group(1).replace(",", "")
    return _clean(line)


def last_number(text: str) -> str | None:
    """The last number in `text` (thousands commas removed), or None."""
    last = None
    for last in _NUMBER_RE.finditer(text):  # noqa: B007
        pass
    if last is None:
        return None
    num = last.group(0)
    if num.startswith("-") and last.start() > 0 and (text[last.start() - 1].isalnum() or text[last.start() - 1] in ")}]"):
        num = num[1:]
    if _THOUSANDS_RE.fullmatch(num):
        num = num.replace(",", "")
    return num


def extract_answer(text: str) -> str | None:
    """The final answer stated in `text`, or None.

    In order: the last non-empty `\\boxed{...}` (or `\\fbox`, `\\framebox`; nested braces
    are matched); the sentence after the last "Final Answer:" (s1 style; the Minerva form
    "Final Answer: The final answer is $X$. I hope it is correct." gives X); after the
    last "the answer is"; the last number in the text.
    """
    if not text:
        return None
    boxes = find_boxed(text)
    if boxes:
        return _clean(boxes[-1]) or boxes[-1]
    for pattern in (_FINAL_ANSWER_RE, _ANSWER_IS_RE):
        ans = _after_phrase(text, pattern)
        if ans:
            return ans
    return last_number(text)


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split at `sep` outside (), [], {} (backslash-escaped braces count as brackets)."""
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
        if ch == sep and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


_SPACING_RE = re.compile(r"\\[,;:! ]|\\left(?![a-zA-Z])|\\right(?![a-zA-Z])|\s+")


def normalize_for_match(ans: str) -> str:
    """A conservative canonical string: equal strings mean equal answers (used as a shortcut)."""
    s = ans.strip()
    while s.startswith("$") and s.endswith("$") and len(s) > 1:
        s = s[1:-1]
    s = _SPACING_RE.sub("", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.rstrip(".")
    return s


def numeric_value(ans: str) -> Decimal | None:
    """The value of a plain decimal number (no LaTeX, no thousands separators), else None."""
    s = ans.strip()
    if not _DECIMAL_RE.fullmatch(s):
        return None
    try:
        return Decimal(s)
    except InvalidOperation:  # pragma: no cover - the pattern excludes it
        return None


def is_plain_int(ans: str) -> bool:
    return bool(_INT_RE.fullmatch(ans.strip()))
