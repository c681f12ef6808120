from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.answer_text import trim_span
from rag.errors import ValidationError


def trimmed(text: str, start: int = 0, end: int | None = None) -> str | None:
    span = trim_span(text, start, len(text) if end is None else end)
    return None if span is None else text[span[0] : span[1]]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("`/openapi.json`", "/openapi.json"),
        ("201`", "201"),
        ("  **Note**: ", "Note"),
        ("_emphasis_", "emphasis"),
        ("~~gone~~", "gone"),
        ("Security { #security }", "Security"),
        ("Security {#security .red}", "Security"),
        ("## Title ##", "Title"),
        ("> quoted", "quoted"),
        ("- item one", "item one"),
        ("| cell |", "cell"),
        ("```python\nimport x\n```", "import x"),
        ("[FastAPI](https://fastapi.tiangolo.com)", "FastAPI"),
        ("![a diagram](img.png)", "a diagram"),
        ("<https://example.com>", "https://example.com"),
        ("&nbsp;foo&amp;", "foo"),
        ("</div>\n\nHello <b>", "Hello"),
        ("<p>text</p>", "text"),
        ('"hello"', "hello"),
        ('"hello', "hello"),
        ('hello"', "hello"),
        ("\u201cquoted\u201d", "quoted"),
        ("\u201cquoted", "quoted"),
        ("\u2018single\u2019", "single"),
        ("\u00abmot\u00bb", "mot"),
        ("'single'", "single"),
        ("users'", "users"),
        ("(foo", "foo"),
        ("foo)", "foo"),
        ("[foo", "foo"),
        ("foo (", "foo"),
        ("the end.", "the end"),
        ("a, b, c,", "a, b, c"),
        ("value;", "value"),
        ("key:", "key"),
        (", and so", "and so"),
        ("wait...", "wait"),
        ("dash \u2014", "dash"),
        ("$ fastapi dev main.py", "fastapi dev main.py"),
        (">>> print(1)", "print(1)"),
    ],
)
def test_markup_quotes_and_punctuation_are_trimmed(raw, expected):
    assert trimmed(raw) == expected


@pytest.mark.parametrize(
    "kept",
    [
        "U.S.",
        "e.g.",
        "Acme Inc.",
        "etc.",
        "f(x)",
        "list[int]",
        "a (b) c",
        "(b)",
        '"a" and "b"',
        "don't",
        "O\u2019Brien\u2019s",
        "'90s",
        "C++",
        "C#",
        "#1",
        "--reload",
        "-5",
        ".env",
        ">5 ms",
        "Yahoo!",
        "3.5",
        "28,500",
        "$5",
    ],
)
def test_answers_that_are_already_clean_are_kept(kept):
    assert trimmed(kept) == kept


@pytest.mark.parametrize(
    "markup",
    ['<div class="termy">', "</div>", "<!-- note -->", "|---|---|", "...", ",;:", "``", "**", "{ #id }", "   ", ""],
)
def test_markup_or_punctuation_only_is_none(markup):
    assert trimmed(markup) is None


def test_a_span_inside_an_html_tag_is_markup():
    text = 'Run it: <div class="termy"> fastapi dev </div>'
    inside = text.index("div class")
    assert trim_span(text, inside, inside + len('div class="termy"')) is None
    # a span that starts inside the tag and runs past it keeps only the text after the tag
    assert trimmed(text, inside, text.index("</div>") + 3) == "fastapi dev"


def test_markup_far_into_a_long_text_is_found():
    text = "x" * 5000 + ' <div class="termy"> fastapi dev </div>'
    inside = text.index("div class")
    assert trim_span(text, inside, inside + 5) is None
    assert trimmed(text, inside, text.index("</div>") + 2) == "fastapi dev"


def test_a_span_starting_or_ending_inside_an_attribute_list_leaves_it_out():
    text = "# Status Code { #status-code .big }\n\nThe code is `201`."
    inside = text.index("#status")
    assert trim_span(text, inside, inside + len("#status-code")) is None
    assert trimmed(text, inside, text.index("201") + 4) == "The code is `201"  # edges clean, not the middle
    assert trimmed(text, 2, text.index(".big") + 2) == "Status Code"


def test_offsets_stay_exact_into_the_original_text():
    text = "The status code is `201`, meaning created."
    start = text.index("`201`")
    span = trim_span(text, start, start + 6)
    assert span == (start + 1, start + 4) and text[span[0] : span[1]] == "201"


def test_underscores_inside_inline_code_or_fences_are_not_emphasis():
    text = "Define `__init__` here."
    start = text.index("__init__")
    assert trimmed(text, start, start + len("__init__")) == "__init__"
    fenced = "```\ndef __init__(self):\n```"
    start = fenced.index("__init__")
    assert trimmed(fenced, start, start + len("__init__")) == "__init__"


def test_a_decimal_point_cut_by_the_span_is_kept():
    text = "version 3.5 is out"
    start = text.index("3.")
    assert trimmed(text, start, start + 2) == "3."


def test_a_bad_range_is_refused_with_the_values():
    with pytest.raises(ValidationError, match="start=3, end=2"):
        trim_span("abcdef", 3, 2)
    with pytest.raises(ValidationError, match="end=9"):
        trim_span("abc", 0, 9)


# ---------------------------------------------------------------------------------------------- properties

_PIECES = st.sampled_from(
    [
        *"ab1Z .,;:!?`*_~#|-+=/\n\t\"'\u201c\u201d\u2018\u2019()[]{}<>&\u00a0\u200b",
        "word",
        "U.S.",
        "3.5",
        '<div class="termy">',
        "</div>",
        "{ #id }",
        "[t](u)",
        "&amp;",
        "```",
    ]
)
_MARKUPISH = st.lists(_PIECES, max_size=40).map("".join)


def _spans(texts: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, int, int]]:
    def with_span(text: str) -> st.SearchStrategy[tuple[str, int, int]]:
        bounds = st.integers(0, len(text))
        return st.tuples(st.just(text), bounds, bounds).map(lambda t: (t[0], min(t[1], t[2]), max(t[1], t[2])))

    return texts.flatmap(with_span)


@settings(max_examples=400, deadline=None)
@given(_spans(_MARKUPISH | st.text(max_size=60)))
def test_the_result_lies_inside_the_span_and_is_trimmed(case):
    text, start, end = case
    span = trim_span(text, start, end)
    if span is None:
        return
    s, e = span
    assert start <= s < e <= end
    answer = text[s:e]
    assert answer == answer.strip()
    assert not answer.startswith("`") and not answer.endswith("`")
    assert any(ch.isalnum() for ch in answer)


@settings(max_examples=300, deadline=None)
@given(_spans(_MARKUPISH))
def test_trimming_is_idempotent(case):
    text, start, end = case
    span = trim_span(text, start, end)
    if span is not None:
        assert trim_span(text, *span) == span
