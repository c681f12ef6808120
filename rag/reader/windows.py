"""Question + passage windows for the span reader, and decoding spans back to character offsets.

A passage longer than the window is cut into overlapping windows (``stride`` tokens shared), so that no
answer is lost at a window edge. Every window keeps, for each token, its character offsets into the passage,
which is how a predicted token span becomes an exact ``passage[start:end]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


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
) -> list[Window]:
    """Tokenise (question, passage) pairs into windows; ``questions[i]`` goes with ``passages[i]``."""
    if not passages:
        return []
    enc = tokenizer(
        list(questions),
        list(passages),
        truncation="only_second",
        max_length=max_length,
        stride=stride,
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
    scores = s[:, None] + e[None, :]
    i, j = np.indices((n, n))
    scores = np.where((j >= i) & (j < i + max_answer_tokens), scores, -np.inf)
    flat = np.argsort(scores, axis=None)[::-1][:top_n]
    null = float(start_logits[0] + end_logits[0])
    out: list[SpanCandidate] = []
    for idx in flat:
        si, ei = divmod(int(idx), n)
        if not np.isfinite(scores[si, ei]):
            break
        start = window.offsets[a + si][0]
        end = window.offsets[a + ei][1]
        if end <= start:
            continue
        out.append(SpanCandidate(window.passage_index, start, end, float(scores[si, ei]), null))
    return out
