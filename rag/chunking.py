"""Sentence-aware chunking under a token budget, keeping exact character offsets.

The text is cut into paragraphs (blank lines, or single lines for one-line-per-paragraph text), paragraphs
into sentences, and sentences are packed into chunks of at most ``max_tokens`` embedder tokens. A chunk ends
at a paragraph break when it is already reasonably full; when a chunk has to end inside a paragraph, the next
one repeats the last ``overlap_sentences`` sentences, so a fact near the cut is whole in one chunk. Every chunk
is a slice of the original text: ``text[chunk.start:chunk.end] == chunk.text``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from rag.errors import ValidationError
from rag.sentences import is_soft_break

#: Token character offsets of each text, e.g. from the embedder's tokenizer (special tokens left out).
TokenOffsets = Callable[[Sequence[str]], list[list[tuple[int, int]]]]


@dataclass(frozen=True, slots=True)
class ChunkerSettings:
    max_tokens: int = 200
    overlap_sentences: int = 1
    min_fill: float = 0.5  # end a chunk at a paragraph break once it holds this share of the budget

    def __post_init__(self) -> None:
        if not 16 <= self.max_tokens <= 512:
            raise ValidationError(f"max_tokens must be between 16 and 512, got {self.max_tokens}")
        if not 0 <= self.overlap_sentences <= 5:
            raise ValidationError(f"overlap_sentences must be between 0 and 5, got {self.overlap_sentences}")

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    paragraph_start: bool = False  # the first sentence of a paragraph


# Sentence ends: terminal punctuation, optional closing quotes/brackets, then whitespace.
_SENTENCE_END = re.compile(r"[.!?\u2026\u3002\uff01\uff1f]+[\"'\u201d\u2019)\]\u00bb]*(?=\s)")
_CJK_END = re.compile(r"[\u3002\uff01\uff1f]")
_ABBREVIATIONS = frozenset(
    [
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "mt",
        "ft",
        "gen",
        "col",
        "lt",
        "sgt",
        "capt",
        "gov",
        "sen",
        "rep",
        "rev",
        "hon",
        "pres",
        "vs",
        "etc",
        "inc",
        "ltd",
        "co",
        "corp",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "no",
        "nos",
        "fig",
        "figs",
        "eq",
        "al",
        "approx",
        "dept",
        "est",
        "vol",
        "pp",
        "e.g",
        "i.e",
        "u.s",
        "u.k",
        "u.n",
        "a.m",
        "p.m",
    ]
)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


def split_paragraphs(text: str) -> list[Span]:
    """Paragraph spans, trimmed of surrounding whitespace; blank lines separate paragraphs."""
    spans = []
    pos = 0
    for m in _PARAGRAPH_BREAK.finditer(text):
        spans.extend(_trim(text, pos, m.start()))
        pos = m.end()
    spans.extend(_trim(text, pos, len(text)))
    return spans


def _trim(text: str, start: int, end: int) -> list[Span]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return [Span(start, end, True)] if end > start else []


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentence spans inside ``text[start:end]``; a hard line break ends a sentence, a soft one (a wrapped
    paragraph line, ``rag.sentences.is_soft_break``) is a space."""
    end = len(text) if end is None else end
    spans: list[Span] = []
    for line_start, line_end in _lines(text, start, end):
        cursor = line_start
        for m in _SENTENCE_END.finditer(text, line_start, line_end):
            stop = m.end()
            if not _CJK_END.search(m.group()) and _is_abbreviation(text, line_start, m.start(), stop, line_end):
                continue
            spans.extend(_trim(text, cursor, stop))
            cursor = stop
        # CJK full stops need no following space.
        spans.extend(_split_cjk(text, cursor, line_end))
    return [Span(s.start, s.end, i == 0) for i, s in enumerate(spans)]


def _split_cjk(text: str, start: int, end: int) -> list[Span]:
    out: list[Span] = []
    cursor = start
    for m in _CJK_END.finditer(text, start, end):
        out.extend(_trim(text, cursor, m.end()))
        cursor = m.end()
    out.extend(_trim(text, cursor, end))
    return out


def _lines(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The ``(start, end)`` of each run of text between hard line breaks (a wrapped paragraph is one run)."""
    out = []
    pos = line_start = start
    while pos < end:
        nl = text.find("\n", pos, end)
        if nl == -1:
            break
        pos = nl + 1
        if nl + 1 < end and is_soft_break(text, nl):
            continue
        out.append((line_start, nl))
        line_start = pos
    if line_start < end:
        out.append((line_start, end))
    return out


def _is_abbreviation(text: str, line_start: int, punct_start: int, stop: int, line_end: int) -> bool:
    """'Mr. Kim', 'U.S. troops', 'J. Smith', '3.5' are not sentence ends."""
    if text[punct_start] != ".":
        return False
    word_start = punct_start
    while word_start > line_start and not text[word_start - 1].isspace() and text[word_start - 1] not in "(\"'\u201c":
        word_start -= 1
    word = text[word_start:punct_start].lower()
    if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
        return True
    if "." in word and len(word) <= 6 and word.replace(".", "").isalpha():  # U.S, e.g, i.e
        nxt = text[stop:line_end].lstrip()
        return bool(nxt) and not nxt[0].isupper()
    # The next word starts lower-case: rarely a new sentence.
    nxt = text[stop:line_end].lstrip()
    return bool(nxt) and nxt[0].islower()


@dataclass(frozen=True, slots=True)
class ChunkSpan:
    start: int
    end: int


def chunk_text(text: str, tokenize: TokenOffsets, settings: ChunkerSettings = ChunkerSettings()) -> list[ChunkSpan]:
    """Chunk spans of ``text`` (offsets into it), each within ``settings.max_tokens`` tokens."""
    sentences: list[Span] = []
    for para in split_paragraphs(text):
        sentences.extend(split_sentences(text, para.start, para.end))
    if not sentences:
        return []
    offsets = tokenize([text[s.start : s.end] for s in sentences])
    units: list[tuple[Span, int]] = []
    for sent, toks in zip(sentences, offsets, strict=True):
        if len(toks) <= settings.max_tokens:
            units.append((sent, max(1, len(toks))))
        else:
            units.extend(_split_long(text, sent, toks, settings.max_tokens))

    budget = settings.max_tokens
    chunks: list[ChunkSpan] = []
    current: list[tuple[Span, int]] = []
    size = 0

    def flush() -> None:
        if current:
            chunks.append(ChunkSpan(current[0][0].start, current[-1][0].end))

    for unit, n in units:
        at_break = unit.paragraph_start and size >= settings.min_fill * budget
        if current and (size + n > budget or at_break):
            flush()
            carry: list[tuple[Span, int]] = []
            if not unit.paragraph_start and settings.overlap_sentences:
                for prev in reversed(current[-settings.overlap_sentences :]):
                    if sum(c for _, c in carry) + prev[1] + n > budget or prev is current[0]:
                        break
                    carry.insert(0, prev)
            current, size = carry, sum(c for _, c in carry)
        current.append((unit, n))
        size += n
    flush()
    return chunks


def _split_long(text: str, sent: Span, tokens: list[tuple[int, int]], budget: int) -> list[tuple[Span, int]]:
    """A sentence over the budget is cut at token boundaries into pieces of at most ``budget`` tokens."""
    out: list[tuple[Span, int]] = []
    for i in range(0, len(tokens), budget):
        group = tokens[i : i + budget]
        start = sent.start + group[0][0]
        end = sent.start + group[-1][1] if i + budget < len(tokens) else sent.end
        out.extend((Span(t.start, t.end, sent.paragraph_start and i == 0), len(group)) for t in _trim(text, start, end))
    return out
