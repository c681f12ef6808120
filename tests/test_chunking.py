from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.chunking import ChunkerSettings, chunk_text, split_paragraphs, split_sentences
from rag.errors import ValidationError


def word_offsets(texts):
    """A stand-in tokenizer: one token per whitespace-separated word (tests stay model-free and fast)."""
    import re

    return [[(m.start(), m.end()) for m in re.finditer(r"\S+", t)] for t in texts]


def check_offsets(text, spans):
    for span in spans:
        assert 0 <= span.start < span.end <= len(text)
        piece = text[span.start : span.end]
        assert piece == piece.strip(), "chunks are trimmed"


def test_sentences_respect_abbreviations_and_numbers():
    text = "Mr. Kim met Dr. Lee in the U.S. capital. Costs rose 8.3 per cent. Why? Nobody knows!"
    got = [text[s.start : s.end] for s in split_sentences(text)]
    assert got == ["Mr. Kim met Dr. Lee in the U.S. capital.", "Costs rose 8.3 per cent.", "Why?", "Nobody knows!"]


def test_quotes_close_the_sentence():
    text = "He said: “It was friendly.” Then he left."
    got = [text[s.start : s.end] for s in split_sentences(text)]
    assert got == ["He said: “It was friendly.”", "Then he left."]


def test_paragraphs_are_trimmed_slices():
    text = "\n\n  First para.\nStill first.\n\n\nSecond para.  \n"
    paras = split_paragraphs(text)
    assert [text[p.start : p.end] for p in paras] == ["First para.\nStill first.", "Second para."]


def test_chunks_stay_within_budget_and_overlap_inside_paragraphs():
    sentences = [f"Sentence number {i} has exactly seven words." for i in range(30)]
    text = " ".join(sentences)
    spans = chunk_text(text, word_offsets, ChunkerSettings(max_tokens=30, overlap_sentences=1))
    check_offsets(text, spans)
    assert len(spans) > 1
    for span in spans:
        assert len(text[span.start : span.end].split()) <= 30
    # Consecutive chunks share their boundary sentence (the paragraph had to be cut).
    assert spans[1].start < spans[0].end


def test_paragraph_breaks_end_full_chunks_without_overlap():
    paras = ["Alpha beta gamma delta. " * 3, "Epsilon zeta eta theta. " * 3]
    text = "\n\n".join(p.strip() for p in paras)
    spans = chunk_text(text, word_offsets, ChunkerSettings(max_tokens=16, overlap_sentences=1))
    assert [text[s.start : s.end] for s in spans] == [p.strip() for p in paras]


def test_overlong_sentence_is_split_at_token_boundaries():
    text = " ".join(f"w{i}" for i in range(100))
    spans = chunk_text(text, word_offsets, ChunkerSettings(max_tokens=16))
    check_offsets(text, spans)
    assert all(len(text[s.start : s.end].split()) <= 16 for s in spans)
    assert " ".join(text[s.start : s.end] for s in spans).split() == text.split()


def test_settings_are_validated():
    with pytest.raises(ValidationError, match="max_tokens must be between 16 and 512, got 4"):
        ChunkerSettings(max_tokens=4)


def test_seed_chunks_are_exact_slices(seed_text, embedder):
    spans = chunk_text(seed_text, embedder.token_offsets)
    check_offsets(seed_text, spans)
    assert len(spans) > 5
    budget = ChunkerSettings().max_tokens
    assert all(len(embedder.token_offsets([seed_text[s.start : s.end]])[0]) <= budget for s in spans)
    covered = "".join(seed_text[s.start : s.end] for s in spans)
    assert "28,500-strong US Forces Korea" in covered


unicode_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),  # every code point but lone surrogates
    max_size=400,
)
mixed = st.lists(
    st.one_of(
        unicode_text,
        st.sampled_from(
            ["Mr. Ishiba", "東京。大阪！", "«Guillemets» — dash…", "🇰🇷 emoji 👍🏽.", "\n\n", "e.g. 3.5%", "“Quote.”"]
        ),
    ),
    max_size=20,
).map(" ".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mixed, st.integers(min_value=16, max_value=64), st.integers(min_value=0, max_value=3))
def test_property_chunks_are_exact_slices_of_any_text(text, budget, overlap):
    spans = chunk_text(text, word_offsets, ChunkerSettings(max_tokens=budget, overlap_sentences=overlap))
    check_offsets(text, spans)
    assert all(len(text[s.start : s.end].split()) <= budget for s in spans)
    # Every word of the text is in some chunk: nothing is lost.
    kept = {m for s in spans for m in range(s.start, s.end)}
    import re

    for m in re.finditer(r"\S+", text):
        assert m.start() in kept


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(mixed)
def test_property_real_tokenizer_on_unicode(embedder, text):
    spans = chunk_text(text, embedder.token_offsets, ChunkerSettings(max_tokens=32))
    check_offsets(text, spans)


def test_sentences_of_a_hard_wrapped_paragraph_cross_its_soft_line_breaks_with_exact_offsets():
    text = (
        "Rust's `char` type is four bytes in size and it represents a Unicode Scalar\n"
        "Value. The toolchain is installed with `rustup`, a command line tool for the\n"
        "versions.\n"
        "- a list item\n"
        "## A heading\n"
        "is a heading"
    )
    got = [text[s.start : s.end] for s in split_sentences(text)]
    assert got == [
        "Rust's `char` type is four bytes in size and it represents a Unicode Scalar\nValue.",
        "The toolchain is installed with `rustup`, a command line tool for the\nversions.",
        "- a list item",
        "## A heading",
        "is a heading",
    ]
