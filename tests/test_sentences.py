"""The sentence around an answer (rag/sentences.py): hand cases for the rules, properties for the offsets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.errors import ValidationError
from rag.sentences import MAX_SENTENCE_CHARS, sentence_around

ARTICLE = (
    "Troop numbers\n"
    "- 28,500 in South Korea\n"
    "- 54,000 in Japan\n\n"
    "Mr. Trump met Dr. Yoon in the U.S. capital on Nov. 8. The talks lasted 3.5 hours, e.g. past midnight. "
    'The book by J. K. Rowling sold well. "We will pay less." Then he left. "Stop!" she said, and walked out. '
    "Who pays? Nobody knows... then again, maybe Seoul. One. Two three. Four. "
    "\u6771\u4eac\u306f\u5927\u304d\u3044\u3002\u5927\u962a\u3082\u5927\u304d\u3044\u3002"
)


def around(text: str, answer: str, nth: int = 0) -> str:
    at = -1
    for _ in range(nth + 1):
        at = text.index(answer, at + 1)
    start, end = sentence_around(text, at, at + len(answer))
    assert start <= at and at + len(answer) <= end
    return text[start:end]


@pytest.mark.parametrize(
    ("answer", "sentence"),
    [
        # Abbreviations and initials do not end a sentence; decimals have no space after the point.
        ("Dr. Yoon", "Mr. Trump met Dr. Yoon in the U.S. capital on Nov. 8."),
        ("capital", "Mr. Trump met Dr. Yoon in the U.S. capital on Nov. 8."),
        ("3.5 hours", "The talks lasted 3.5 hours, e.g. past midnight."),
        ("Rowling", "The book by J. K. Rowling sold well."),
        # Closing quotes stay with their sentence; a lower-case word after "!" or "..." goes on with it.
        ("pay less", '"We will pay less."'),
        ("Then", "Then he left."),
        ("walked out", '"Stop!" she said, and walked out.'),
        ("Seoul", "Nobody knows... then again, maybe Seoul."),
        ("Who", "Who pays?"),
        # Lines are sentences: headings and list items.
        ("28,500", "- 28,500 in South Korea"),
        ("Troop", "Troop numbers"),
        ("Japan", "- 54,000 in Japan"),
        # A span across a sentence end gets both sentences.
        ("three. Four", "Two three. Four."),
        ("Two", "Two three."),
        # CJK full stops need no space after them.
        ("\u5927\u962a", "\u5927\u962a\u3082\u5927\u304d\u3044\u3002"),
    ],
)
def test_the_rules_on_hand_cases(answer: str, sentence: str) -> None:
    assert around(ARTICLE, answer) == sentence


def test_a_sentence_end_after_an_abbreviation_is_kept_when_a_capital_follows_a_plain_word() -> None:
    text = "Prices rose 3.5 per cent. Markets fell. The U.S. Army left."
    assert around(text, "Markets") == "Markets fell."
    assert around(text, "Army") == "The U.S. Army left."


def test_a_very_long_sentence_is_cut_around_the_answer() -> None:
    text = "Intro. " + " ".join(f"Item{i}" for i in range(600)) + ". Outro."
    sentence = around(text, "Item300")
    assert "Item300" in sentence and len(sentence) <= MAX_SENTENCE_CHARS
    assert not sentence[0].isspace() and not sentence[-1].isspace()
    assert around(text, "Outro") == "Outro." and around(text, "Intro") == "Intro."
    # The cut falls between words, and the same span always gets the same piece.
    start = text.index(sentence)
    assert text[start - 1] == " " and text[start + len(sentence)] == " "
    assert sentence_around(text, start, start + len(sentence)) == (start, start + len(sentence))


def test_a_span_outside_the_text_is_refused_with_its_offsets() -> None:
    with pytest.raises(ValidationError, match="3..99"):
        sentence_around("short", 3, 99)
    with pytest.raises(ValidationError, match="4..2"):
        sentence_around("short", 4, 2)


# ------------------------------------------------------------------------------------------------ properties

PIECES = st.sampled_from(
    [
        "word",
        "Capital",
        "lower",
        "28,500",
        "3.5",
        "Mr.",
        "U.S.",
        "e.g.",
        "J.",
        ".",
        "!",
        "?",
        "...",
        '"',
        "\u201d",
        ")",
        "\u3002",
        " ",
        " ",
        " ",
        "  ",
        "\n",
        "\n\n",
        "\t",
        "x" * 40,
    ]
)


@st.composite
def text_and_span(draw: st.DrawFn, max_pieces: int = 120) -> tuple[str, int, int]:
    text = "".join(draw(st.lists(PIECES, min_size=1, max_size=max_pieces)))
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, min(len(text), start + 80)))
    return text, start, end


@given(text_and_span())
@settings(max_examples=400, deadline=None)
def test_offsets_hold_the_span_and_the_boundaries_are_a_fixed_point(case: tuple[str, int, int]) -> None:
    text, start, end = case
    s, e = sentence_around(text, start, end)
    assert 0 <= s <= start <= end <= e <= len(text)
    sentence = text[s:e]
    # Trimmed, except where the span itself begins or ends in whitespace.
    assert s == start or not sentence[:1].isspace()
    assert e == end or not sentence[-1:].isspace()
    assert sentence_around(text, s, e) == (s, e)  # the sentence of a sentence is itself
    # Never more than MAX_SENTENCE_CHARS on either side: a long sentence is cut around the span.
    assert start - s <= MAX_SENTENCE_CHARS and e - end <= MAX_SENTENCE_CHARS


@given(text_and_span(max_pieces=900))
@settings(max_examples=60, deadline=None)
def test_long_texts_are_read_only_around_the_span(case: tuple[str, int, int]) -> None:
    text, start, end = case
    s, e = sentence_around(text, start, end)
    assert s <= start <= end <= e
    assert start - s <= MAX_SENTENCE_CHARS and e - end <= MAX_SENTENCE_CHARS
    assert sentence_around(text, s, e) == (s, e)


WRAPPED = """# Getting started

The toolchain is installed with `rustup`, a command line tool for managing Rust
versions and associated tools. Rust's `char` type is four bytes in size and it
represents a Unicode Scalar Value.

| name | size |
| char | 4 |
- a list item that is long enough to be a wrapped line of text in a paragraph
- another item
Walter Sim
The Straits Times"""


def test_a_hard_wrapped_paragraph_is_read_as_if_its_line_breaks_were_spaces():
    start = WRAPPED.index("versions")
    s, e = sentence_around(WRAPPED, start, start + len("versions"))
    assert WRAPPED[s:e] == (
        "The toolchain is installed with `rustup`, a command line tool for managing Rust\n"
        "versions and associated tools."
    )
    start = WRAPPED.index("represents")
    s, e = sentence_around(WRAPPED, start, start + 10)
    assert WRAPPED[s:e].startswith("Rust's `char` type") and WRAPPED[s:e].endswith("Unicode Scalar Value.")


@pytest.mark.parametrize(
    ("word", "sentence"),
    [
        ("Getting", "# Getting started"),
        ("char |", "| char | 4 |"),
        ("another", "- another item"),
        ("Walter", "Walter Sim"),  # a short line: a byline, a heading, a signature
        ("Straits", "The Straits Times"),
    ],
)
def test_headings_table_rows_list_items_and_short_lines_still_end_at_their_line_break(word, sentence):
    start = WRAPPED.index(word)
    s, e = sentence_around(WRAPPED, start, start + len(word))
    assert WRAPPED[s:e] == sentence
