"""What a question asks for, as spaCy entity labels ("how many" -> CARDINAL, QUANTITY, MONEY, PERCENT; "when" ->
DATE, TIME; "who" -> PERSON, ORG, NORP; ...): rules on the question's words, no model.

The decide stage (``rag/decide.py``) turns it into features (does the span have the shape of what is asked);
the fallback reader (``rag/reader/heuristic.py``) narrows its sentences to entities of those labels.
"""

from __future__ import annotations

import re

_EXPECTED: list[tuple[re.Pattern[str], tuple[str, ...]]] = [
    (re.compile(r"\bwhat (?:percentage|percent|share|proportion)\b|\bhow much of\b", re.I), ("PERCENT",)),
    (re.compile(r"\bhow much (?:money|did|does|will|would|is|was)\b|\bcost|\bprice|\bpay\b|\bspend", re.I), ("MONEY",)),
    (
        re.compile(r"\bhow (?:many|much)\b|\bwhat (?:number|size|amount)\b", re.I),
        ("CARDINAL", "QUANTITY", "MONEY", "PERCENT"),
    ),
    (re.compile(r"\bhow (?:long|old)\b", re.I), ("DATE", "TIME", "QUANTITY", "CARDINAL")),
    (
        re.compile(r"\bwhen\b|\bwhat (?:year|date|day|month|time)\b|\bwhich (?:year|date|day|month)\b", re.I),
        ("DATE", "TIME"),
    ),
    (
        re.compile(
            r"\bwhere\b|\bwhich (?:country|city|place|region|state)\b|\bwhat (?:country|city|place|region)\b", re.I
        ),
        ("GPE", "LOC", "FAC"),
    ),
    (
        re.compile(r"\bwho\b|\bwhom\b|\bwhose\b|\bwhich (?:person|leader|president|minister)\b", re.I),
        ("PERSON", "ORG", "NORP"),
    ),
    (
        re.compile(
            r"\b(?:which|what) (?:organi[sz]ation|company|group|institute|agency|party|bank|think.tank)\b",
            re.I,
        ),
        ("ORG",),
    ),
]


def expected_labels(question: str) -> tuple[str, ...]:
    for pattern, labels in _EXPECTED:
        if pattern.search(question):
            return labels
    return ()
