"""rag/tokenizer.py against transformers' tokenizer for the same tokenizer.json: the same ids, types, offsets
and windows, so that serving without transformers reads and embeds exactly as before."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.reader.model import base_model_path
from rag.reader.windows import make_windows
from rag.tokenizer import FastTokenizer

WORDS = st.sampled_from(
    [
        "the",
        "Trump",
        "28,500",
        "troops",
        "Yoon",
        "Ishiba's",
        "naïve",
        "東京",
        "U.S.",
        "—",
        "e-mail",
        "x" * 30,
        "\n",
        "🙂",
    ]
)
TEXT = st.lists(WORDS, min_size=0, max_size=400).map(" ".join)


@pytest.fixture(scope="module")
def pair():
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(str(base_model_path())), FastTokenizer(base_model_path())


def _same(a, b, keys):
    for key in keys:
        assert [list(map(tuple, x)) if key == "offset_mapping" else list(x) for x in a[key]] == [
            list(map(tuple, x)) if key == "offset_mapping" else list(x) for x in b[key]
        ], key


@settings(max_examples=40, deadline=None)
@given(questions=st.lists(TEXT, min_size=1, max_size=4), passage=TEXT, stride=st.integers(0, 120))
def test_windows_match_transformers(pair, questions, passage, stride):
    hf, ours = pair
    passages = [passage + " " + q for q in questions]
    for length in (64, 256):
        expected = make_windows(hf, questions, passages, max_length=length, stride=stride)
        assert make_windows(ours, questions, passages, max_length=length, stride=stride) == expected


@settings(max_examples=30, deadline=None)
@given(texts=st.lists(TEXT, min_size=1, max_size=6))
def test_padded_batches_and_offsets_match_transformers(pair, texts):
    hf, ours = pair
    a = hf(texts, padding=True, truncation=True, max_length=256, return_tensors="np")
    b = ours(texts, padding=True, truncation=True, max_length=256, return_tensors="np")
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert np.array_equal(a[key], b[key]), key
    a = hf(texts, add_special_tokens=False, return_offsets_mapping=True, truncation=False)
    b = ours(texts, add_special_tokens=False, return_offsets_mapping=True, truncation=False)
    _same(a, b, ("input_ids", "offset_mapping"))


def test_special_tokens_and_bad_arguments(pair):
    hf, ours = pair
    assert ours.num_special_tokens_to_add(pair=True) == hf.num_special_tokens_to_add(pair=True) == 3
    assert ours.num_special_tokens_to_add(pair=False) == 2
    with pytest.raises(Exception, match="max_length"):
        ours(["a"], truncation=True)
    with pytest.raises(Exception, match="return_tensors"):
        ours(["a"], return_tensors="pt")
