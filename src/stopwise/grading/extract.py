"""Where the answer is: the answer phase, and the `\\boxed{}` answers in it.

Plain string work, linear in the text (no backtracking-prone patterns), so it runs in the
calling process. Reading an answer out of the text is math-verify's job (its own LaTeX and
expression extraction, in the worker pool: `stopwise.grading.pool`); nothing here guesses
an answer from numbers.
"""

from __future__ import annotations

import re

DEFAULT_EOT = "</think>"

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
    return [content for _, _, content in box_spans(text)]


def box_spans(text: str) -> list[tuple[int, int, str]]:
    """`(start, end, content)` of every box of `find_boxed`, in order of appearance."""
    found: list[tuple[int, int, str]] = []
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
                    found.append((top[0], m.end(), content))
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
                    found.append((m.start(), bare.end(), bare.group(0)))
        # else: an escaped brace or a double backslash, not structure
    found.sort(key=lambda x: x[0])
    return found


# What may stand between boxes that give one answer together: spaces, punctuation, math
# delimiters, "and" / "or", and "x =" ("$x = \\boxed{3}$ or $x = \\boxed{-3}$").
_BETWEEN_BOXES_RE = re.compile(
    r"(?:[\s$,;.]|\\[()\[\]]|\\q?quad|\\text\{\s*(?:and|or)\s*\}|\b(?:and|or)\b"
    r"|[A-Za-z](?:_\{?\w+\}?)?\s*=)*"
)


def final_boxes(text: str) -> tuple[list[str], str]:
    """The final answer's boxes, and the text with every other box unboxed.

    The final boxes: the last box and the boxes just before it that only separators
    (`_BETWEEN_BOXES_RE`) part from it, in order (boxes inside another box are skipped).
    Earlier boxes (intermediate results) become plain braces, `\\boxed{255}` -> `{255}`,
    so that math-verify's own box patterns see the final ones only; the final ones are
    tidied (`_tidy_box`) in the text too. `([], text)` without a box.
    """
    spans = []
    for start, end, content in box_spans(text):
        if spans and start < spans[-1][1]:
            continue  # nested in the previous box
        spans.append((start, end, content))
    if not spans:
        return [], text
    first = len(spans) - 1
    while first > 0:
        between = text[spans[first - 1][1] : spans[first][0]]
        if len(between) > 200 or not _BETWEEN_BOXES_RE.fullmatch(between):
            break
        first -= 1
    pieces, at = [], 0
    for start, end, content in spans[:first]:
        pieces += [text[at:start], "{", content, "}"]
        at = end
    final = []
    for start, end, content in spans[first:]:
        final.append(_tidy_box(content))
        pieces += [text[at:start], "\\boxed{", final[-1], "}"]
        at = end
    pieces.append(text[at:])
    return final, "".join(pieces)


def _tidy_box(content: str) -> str:
    """A box's content without a closing sentence period or a formatting command around it
    (`\\boxed{104.}`, `\\boxed{\\textbf{(073)}}`)."""
    tidy = content.strip()
    if tidy.endswith(".") and not tidy.endswith(".."):
        tidy = tidy[:-1].rstrip()
    return _unwrap_format(tidy) or content


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


def clean_answer(ans: str) -> str | None:
    """A boxed answer as a gold answer: math delimiters, trailing punctuation, politeness and a
    formatting command around it removed (the benchmark loader reads gold answers this way)."""
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
