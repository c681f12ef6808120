"""Question + passage windows for the span reader, and decoding spans back to character offsets.

A passage longer than the window is cut into overlapping windows (``stride`` tokens shared), so that no
answer is lost at a window edge. Every window keeps, for each token, its character offsets into the passage,
which is how a predicted token span becomes an exact ``passage[start:end]``.

A question gets a token budget (``max_question_tokens``, like ``max_query_length`` in QA pipelines): a longer
one is cut, so that every window keeps room for passage tokens. Without it a long question left the tokenizer
less room than the stride, and it panicked (``stride must be strictly less than max_len``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rag.errors import ValidationError


@dataclass(frozen=True, slots=True)
class Window:
    """One model input: token ids, and each token's character span in passage ``passage_index``."""

    passage_index: int
    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[tuple[int, int]]  # (0, 0) for question and special tokens
    context_start: int  # first passage token
    context_end: int  # one past the last passage token


@dataclass(frozen=True, slots=True)
class SpanCandidate:
    passage_index: int
    start: int  # character offsets into the passage
    end: int
    score: float  # start logit + end logit
    null_score: float  # the window's [CLS] start + end logit


def make_windows(
    tokenizer,
    questions: Sequence[str],
    passages: Sequence[str],
    *,
    max_length: int = 256,
    stride: int = 96,
    max_question_tokens: int = 64,
) -> list[Window]:
    """Tokenise (question, passage) pairs into windows; ``questions[i]`` goes with ``passages[i]``.

    A question keeps at most ``max_question_tokens`` tokens, and at most half of what the window holds besides
    its special tokens, so that passage tokens always fit; ``stride`` shrinks below the room that leaves for
    the passage where it would not fit (it never does at the defaults, 256/96/64)."""
    if not passages:
        return []
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    if max_question_tokens < 1:
        raise ValidationError(f"max_question_tokens must be at least 1, got {max_question_tokens}")
    if max_length - specials < 2:
        raise ValidationError(f"max_length must be at least {specials + 2}, got {max_length}")
    if stride < 0:
        raise ValidationError(f"stride must be at least 0, got {stride}")
    budget = min(max_question_tokens, (max_length - specials) // 2)
    room = max_length - specials - budget  # passage tokens a window holds, at the least
    enc = tokenizer(
        fit_questions(tokenizer, questions, budget),
        list(passages),
        truncation="only_second",
        max_length=max_length,
        stride=min(stride, room - 1),  # the tokenizer requires stride < room
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )
    windows: list[Window] = []
    mapping = enc["overflow_to_sample_mapping"]
    for i, ids in enumerate(enc["input_ids"]):
        seq_ids = enc.sequence_ids(i)
        ctx = [t for t, s in enumerate(seq_ids) if s == 1]
        offsets = [(a, b) if seq_ids[t] == 1 else (0, 0) for t, (a, b) in enumerate(enc["offset_mapping"][i])]
        windows.append(
            Window(
                passage_index=int(mapping[i]),
                input_ids=list(ids),
                token_type_ids=list(enc["token_type_ids"][i]),
                offsets=offsets,
                context_start=ctx[0] if ctx else 0,
                context_end=ctx[-1] + 1 if ctx else 0,
            )
        )
    return windows


def fit_questions(tokenizer, questions: Sequence[str], max_tokens: int) -> list[str]:
    """Each question cut to its first ``max_tokens`` tokens (at the end of the last kept token's characters);
    questions within the budget are returned unchanged."""
    fitted = {q: q for q in questions}  # the reader sends one question once per passage: tokenise it once
    pending = list(fitted)
    while pending:
        # One token past the budget says a question is over it (and keeps the tokenizer's long-input warning quiet).
        enc = tokenizer(
            [fitted[q] for q in pending],
            add_special_tokens=False,
            return_offsets_mapping=True,
            truncation=True,
            max_length=max_tokens + 1,
        )
        over = []
        for q, offsets in zip(pending, enc["offset_mapping"], strict=True):
            text = fitted[q]
            if len(offsets) > max_tokens and offsets[max_tokens - 1][1] < len(text):
                fitted[q] = text[: offsets[max_tokens - 1][1]]
                over.append(q)
        # A prefix that ends on a token boundary tokenises to the same tokens (WordPiece matches greedily from
        # the left), so one cut does; the cuts are checked again rather than trusted (each pass only shortens).
        pending = over
    return [fitted[q] for q in questions]


def token_targets(w: Window, spans: Sequence[tuple[int, int]]) -> tuple[set[int], set[int]]:
    """Token positions of the spans that lie wholly inside window ``w``."""
    starts: set[int] = set()
    ends: set[int] = set()
    if w.context_end <= w.context_start:
        return starts, ends
    first_char, last_char = w.offsets[w.context_start][0], w.offsets[w.context_end - 1][1]
    for a_start, a_end in spans:
        if first_char > a_start or last_char < a_end:
            continue
        first = last = None
        for t in range(w.context_start, w.context_end):
            ts, te = w.offsets[t]
            if first is None and te > a_start:
                first = t
            if ts < a_end:
                last = t
        if first is not None and last is not None and last >= first:
            starts.add(first)
            ends.add(last)
    return starts, ends


def pad_batch(windows: Sequence[Window]) -> dict[str, npt.NDArray[np.int64]]:
    """Right-pad a batch to its longest window (dynamic padding)."""
    width = max(len(w.input_ids) for w in windows)
    ids = np.zeros((len(windows), width), dtype=np.int64)
    types = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for row, w in enumerate(windows):
        n = len(w.input_ids)
        ids[row, :n] = w.input_ids
        types[row, :n] = w.token_type_ids
        mask[row, :n] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def best_spans(
    window: Window,
    start_logits: npt.NDArray[np.float32],
    end_logits: npt.NDArray[np.float32],
    *,
    max_answer_tokens: int = 30,
    top_n: int = 3,
) -> list[SpanCandidate]:
    """The ``top_n`` highest-scoring spans inside the window's passage tokens (start <= end < start + max)."""
    a, b = window.context_start, window.context_end
    if b <= a:
        return []
    s = start_logits[a:b].astype(np.float32)
    e = end_logits[a:b].astype(np.float32)
    n = b - a
    # Only the band of allowed spans (start i, end i + d for d < max_answer_tokens) is scored, and the best
    # top_n are picked by partial selection: n x 30 scores instead of sorting all n x n (n is up to ~250).
    width = min(max_answer_tokens, n)
    ends = np.arange(n)[:, None] + np.arange(width)[None, :]
    band = np.where(ends < n, s[:, None] + e[np.minimum(ends, n - 1)], -np.inf)
    k = min(top_n, band.size)
    if k <= 0:
        return []
    part = np.argpartition(-band, k - 1, axis=None)[:k]
    order = part[np.lexsort((-part, -band.ravel()[part]))]  # best first; ties: the later span first, as before
    null = float(start_logits[0] + end_logits[0])
    out: list[SpanCandidate] = []
    for idx in order:
        si, d = divmod(int(idx), width)
        score = band[si, d]
        if not np.isfinite(score):
            break
        ei = si + d
        start = window.offsets[a + si][0]
        end = window.offsets[a + ei][1]
        if end <= start:
            continue
        out.append(SpanCandidate(window.passage_index, start, end, float(score), null))
    return out
