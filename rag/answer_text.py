"""Answer spans without the markup around them.

A reader's span may start or end on whitespace, Markdown (backticks, emphasis, heading markers, attribute
lists), HTML tags, stray quotes or brackets, or trailing punctuation. ``trim_span`` only ever narrows the span,
so its offsets stay exact into the original text and ``text[start:end]`` is still the answer. ``is_distinct``
tells a candidate answer from the better ones already kept (another text, and no overlap).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.errors import ValidationError

# Markup the span may start or end inside of is searched this far either side of it.
_TAG_WINDOW = 1000
# HTML tags and comments, and Markdown attribute lists ({ #id .class }): markup a span must not start or end in.
_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>|\{:?[ \t]*[#.][^{}\n]*\}", re.DOTALL)
_ENTITY_HEAD = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);")
_ENTITY_TAIL = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);\Z")
_ATTRS_HEAD = re.compile(r"\{\s*[#.][^{}\n]*\}")  # Markdown attribute list: { #id .class }
_ATTRS_TAIL = re.compile(r"\{\s*[#.][^{}\n]*\}\Z")
_FENCE_HEAD = re.compile(r"(?:```|~~~)[^\n]*(?:\n|\Z)")
_LINK = re.compile(r"!?\[([^\[\]\n]*[^\[\]\s][^\[\]\n]*)\]\([^()\s]*(?:\s+\"[^\"\n]*\")?\)")
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.-]*:[^<>\s]+)>")
# A final '.' that belongs to the last word: initials (U.S., e.g.) or a common abbreviation.
_ABBREVIATION = re.compile(
    r"(?:(?<![A-Za-z])[A-Za-z]\.){2,}\Z"
    r"|(?<![A-Za-z])(?:etc|Inc|Ltd|Co|Corp|Jr|Sr|vs)\.\Z"
)
_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff")
_BRACKETS = {"(": ")", "[": "]", "{": "}"}
_CLOSING = {v: k for k, v in _BRACKETS.items()}
_CURLY = {"\u201c": "\u201d", "\u2018": "\u2019", "\u00ab": "\u00bb"}  # “” ‘’ «»
_CURLY_CLOSING = {v: k for k, v in _CURLY.items()}
_STRAIGHT = "\"'"
_EDGE_PUNCT = ",;:!?\u2026"  # leading ones are always stray; trailing '!' and '?' are kept (names, titles)
_TRAILING_PUNCT = ",;:\u2026"
_DASHES = "-+\u2013\u2014"


def trim_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Narrow ``text[start:end]`` so it neither starts nor ends with whitespace, markup, stray quotes or
    brackets, or trailing punctuation; None when nothing but markup, punctuation or symbols is left."""
    if not 0 <= start <= end <= len(text):
        raise ValidationError(f"span must satisfy 0 <= start <= end <= {len(text)}, got start={start}, end={end}")
    lo = max(0, start - _TAG_WINDOW)
    tags = [m.span() for m in _TAG.finditer(text, lo, min(len(text), end + _TAG_WINDOW))]
    s, e = start, end
    while s < e:
        before = (s, e)
        s, e = _strip_space(text, s, e)
        if s >= e:
            return None
        s, e = _unwrap_link(text, s, e)
        s = _trim_head(text, s, e, tags)
        if s < e:
            e = _trim_tail(text, s, e, tags)
        if (s, e) == before:
            break
    if s >= e or not any(ch.isalnum() for ch in text[s:e]):
        return None
    return s, e


def _strip_space(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and (text[s].isspace() or text[s] in _ZERO_WIDTH):
        s += 1
    while e > s and (text[e - 1].isspace() or text[e - 1] in _ZERO_WIDTH):
        e -= 1
    return s, e


def _unwrap_link(text: str, s: int, e: int) -> tuple[int, int]:
    """A span that is exactly a Markdown link or image, or an autolink, narrows to its text or address."""
    m = _LINK.fullmatch(text, s, e) or _AUTOLINK.fullmatch(text, s, e)
    return (m.start(1), m.end(1)) if m else (s, e)


def _trim_head(text: str, s: int, e: int, tags: list[tuple[int, int]]) -> int:
    """The span's start moved past one piece of markup or stray punctuation at its left edge (or unchanged)."""
    ch = text[s]
    for ts, te in tags:
        if ts <= s < te:  # starts on or inside an HTML tag: skip to its end
            return te
    for pattern in (_ENTITY_HEAD, _ATTRS_HEAD, _FENCE_HEAD):
        if m := pattern.match(text, s, e):
            return m.end()
    nxt = text[s + 1] if s + 1 < e else ""
    if ch == "`" or ch == "|":
        return s + 1
    if text.startswith("~~", s, e):  # strikethrough, not "~5 ms"
        return s + 2
    if ch in "*_" and not _in_code(text, s):
        return s + 1
    if ch == "#" and (not nxt or nxt == "#" or nxt.isspace()):  # heading marker, not "#1" or "#hashtag"
        return s + 1
    if ch == ">" and (not nxt or nxt.isspace() or nxt == ">"):  # blockquote marker or >>> prompt, not ">5 ms"
        return s + 1
    if ch == "$" and (not nxt or nxt.isspace()):  # a shell prompt, not "$5"
        return s + 1
    if ch in _CLOSING or (ch in _CURLY_CLOSING and not _is_apostrophe(text, s)):  # a closer opening the span
        return s + 1
    if ch in _EDGE_PUNCT or (ch == "." and not nxt.isalnum()):  # keep ".env", ".5"
        return s + 1
    if ch in _DASHES and (not nxt or nxt.isspace()):  # list bullets and dashes, not "-5" or "--reload"
        return s + 1
    if ch in _BRACKETS and _match_forward(text, s, e, ch, _BRACKETS[ch]) is None:
        return s + 1
    if ch in _CURLY:
        closed_at = _match_forward(text, s, e, ch, _CURLY[ch])
        if closed_at is None or closed_at == e - 1:  # unbalanced, or the pair wraps the whole span
            return s + 1
    if ch in _STRAIGHT and not (ch == "'" and nxt.isdigit()):  # keep "'90s"
        count = _straight_quotes(text, s, e, ch)
        if count % 2 or (count == 2 and text[e - 1] == ch):
            return s + 1
    return s


def _trim_tail(text: str, s: int, e: int, tags: list[tuple[int, int]]) -> int:
    """The span's end moved before one piece of markup or stray punctuation at its right edge (or unchanged)."""
    last = e - 1
    ch = text[last]
    for ts, te in tags:
        if ts <= last < te:  # ends on or inside an HTML tag: cut before it
            return max(ts, s)
    for pattern in (_ENTITY_TAIL, _ATTRS_TAIL):
        if m := pattern.search(text, s, e):
            return m.start()
    prev = text[last - 1] if last > s else ""
    if ch == "`" or ch == "|":
        return last
    if e - s >= 2 and text.startswith("~~", e - 2, e):
        return e - 2
    if ch in "*_" and not _in_code(text, last):
        return last
    if ch == "#" and (not prev or prev == "#" or prev.isspace()):  # closing heading marker, not "C#"
        return last
    if ch in _BRACKETS or (ch in _CURLY and ch not in _CURLY_CLOSING) or ch == "<":
        return last  # an opener with nothing after it
    if ch in _TRAILING_PUNCT:
        return last
    if ch == "." and not _keeps_final_dot(text, s, e):
        return last
    if ch in _DASHES and (not prev or prev.isspace()):  # a dangling dash, not "C++"
        return last
    if ch in _CLOSING and _match_backward(text, s, e, _CLOSING[ch], ch) is None:
        return last
    curly_unopened = ch in _CURLY_CLOSING and _match_backward(text, s, e, _CURLY_CLOSING[ch], ch) is None
    if curly_unopened and not _is_apostrophe(text, last):
        return last
    if ch in _STRAIGHT and _straight_quotes(text, s, e, ch) % 2:
        return last
    return e


def _keeps_final_dot(text: str, s: int, e: int) -> bool:
    """A final '.' stays when it ends an abbreviation ("U.S.") or is a decimal point the span cut ("3.5")."""
    if _ABBREVIATION.search(text, s, e):
        return True
    return e - 2 >= s and text[e - 2].isdigit() and e < len(text) and text[e].isdigit()


def _is_apostrophe(text: str, i: int) -> bool:
    """A ' or ’ between two letters or digits (don't, O’Brien) is part of the word, not a quote."""
    return text[i] in "'\u2018\u2019" and 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()


def _straight_quotes(text: str, s: int, e: int, quote: str) -> int:
    return sum(1 for i in range(s, e) if text[i] == quote and not (quote == "'" and _is_apostrophe(text, i)))


def _match_forward(text: str, s: int, e: int, opener: str, closer: str) -> int | None:
    """Where the opener at ``s`` is closed inside the span, or None."""
    depth = 0
    for i in range(s, e):
        if text[i] == opener and not _is_apostrophe(text, i):
            depth += 1
        elif text[i] == closer and not _is_apostrophe(text, i):
            depth -= 1
            if depth == 0:
                return i
    return None


def _match_backward(text: str, s: int, e: int, opener: str, closer: str) -> int | None:
    """Where the closer at ``e - 1`` is opened inside the span, or None."""
    depth = 0
    for i in range(e - 1, s - 1, -1):
        if text[i] == closer and not _is_apostrophe(text, i):
            depth += 1
        elif text[i] == opener and not _is_apostrophe(text, i):
            depth -= 1
            if depth == 0:
                return i
    return None


def _in_code(text: str, i: int) -> bool:
    """Inside an inline code span (an odd number of backticks before ``i`` on its line) or a fenced block."""
    line_start = text.rfind("\n", 0, i) + 1
    if text.count("`", line_start, i) % 2:
        return True
    fences = 0
    for line in text[:line_start].splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fences += 1
    return fences % 2 == 1


def is_distinct(span: tuple[str, int, int, str], kept: Sequence[tuple[str, int, int, str]]) -> bool:
    """A candidate answer (document id, start, end, normalised text) is distinct from the better ones already
    kept when its text differs from each and its characters do not overlap theirs in the same document
    ("28" inside "28,500" is the same answer, read worse)."""
    doc_id, start, end, text = span
    return all(
        text != k_text and (doc_id != k_doc or end <= k_start or start >= k_end)
        for k_doc, k_start, k_end, k_text in kept
    )
