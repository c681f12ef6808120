"""The merge policy: which adjacent segments to write again as one.

As Lucene's log merge policy: a segment's level is the order of magnitude (base ``MERGE_FACTOR``) of its chunk
count; when ``MERGE_FACTOR`` adjacent segments share a level they are merged into one of the next level. With
one small segment per write, an index of N chunks keeps about ``MERGE_FACTOR * log(N) / log(MERGE_FACTOR)``
segments at most, and each chunk is rewritten about ``log(N) / log(MERGE_FACTOR)`` times over its life.
Merges keep keys ascending across segments because they only join neighbours.

A merge leaves deleted documents out. A segment whose deleted chunks reach ``EXPUNGE_SHARE`` of its stored ones
is written again alone when no merge is due (as Lucene's ``deletesPctAllowed``): deleted rows cost memory and
search time until then, and a search skips them (rag/store/search.py), so its results never include them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MERGE_FACTOR = 10
#: Segments up to this many chunks all count as level 0 (a merge of tiny segments is cheap anyway).
FLOOR_CHUNKS = 100
#: A segment is written again without its deleted chunks once they are this share of its stored ones.
EXPUNGE_SHARE = 0.25


def level(chunks: int) -> int:
    return max(0, math.floor(math.log(max(chunks, 1) / FLOOR_CHUNKS, MERGE_FACTOR)) + 1) if chunks > FLOOR_CHUNKS else 0


def plan(sizes: Sequence[int], dead: Sequence[int] | None = None, factor: int = MERGE_FACTOR) -> tuple[int, int] | None:
    """The first run ``[start, end)`` of ``factor`` adjacent segments of the same level (lowest level first);
    else the segment with the largest share of deleted chunks (``dead``, beside the live ``sizes``) at or above
    ``EXPUNGE_SHARE``, alone; None when nothing is due."""
    levels = [level(s) for s in sizes]
    for wanted in sorted(set(levels)):
        run = 0
        for i, lv in enumerate(levels):
            run = run + 1 if lv == wanted else 0
            if run == factor:
                return (i - factor + 1, i + 1)
    shares = [(d / (s + d), i) for i, (s, d) in enumerate(zip(sizes, dead or [0] * len(sizes), strict=True)) if d]
    worst = max(shares, default=None)
    return (worst[1], worst[1] + 1) if worst is not None and worst[0] >= EXPUNGE_SHARE else None


def plan_all(sizes: Sequence[int], dead: Sequence[int] | None = None) -> tuple[int, int] | None:
    """Everything as one segment without deleted chunks (``rag optimize``), or None when it already is."""
    return (0, len(sizes)) if len(sizes) > 1 or any(dead or ()) else None
