from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.decide import FEATURES, Calibrator, Candidate, candidate_features
from rag.offline.train import label_windows
from rag.reader.model import DEFAULT_READER_DIR, base_model_path
from rag.reader.windows import Window, best_spans, make_windows, pad_batch
from rag.squad import GoldAnswer, SquadQuestion
from rag.types import Chunk, Hit

HAS_WEIGHTS = (DEFAULT_READER_DIR / "model.safetensors").is_file()


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model_path())


def squad_question(context: str, answer: str, question: str = "What?") -> SquadQuestion:
    start = context.index(answer)
    return SquadQuestion("q", question, "T", context, (GoldAnswer(answer, start),), False, 0, 0)


def test_windows_keep_character_offsets_and_overlap(tokenizer):
    passage = " ".join(f"Sentence {i} mentions café number {i}." for i in range(80))
    windows = make_windows(tokenizer, ["Which café?"], [passage], max_length=64, stride=16)
    assert len(windows) > 3
    for w in windows:
        assert all(passage[a:b].strip() for a, b in w.offsets[w.context_start : w.context_end])
    # Consecutive windows overlap, so no answer is cut at a window edge.
    for a, b in zip(windows, windows[1:], strict=False):
        assert b.offsets[b.context_start][0] < a.offsets[a.context_end - 1][1]


def test_a_long_question_keeps_its_first_64_tokens_and_the_passage_keeps_its_room(tokenizer):
    question = "How many troops are in US Forces Korea? " * 25  # 1,000 characters, 250 tokens
    passage = " ".join(f"Sentence {i} mentions café number {i}." for i in range(80))
    windows = make_windows(tokenizer, [question], [passage])  # the reader's settings: 256 tokens, stride 96
    first_64 = tokenizer(question, add_special_tokens=False)["input_ids"][:64]
    assert all(w.input_ids[1 : w.context_start - 1] == first_64 for w in windows)  # [CLS] question [SEP]
    assert all(w.context_end - w.context_start == 256 - 3 - 64 for w in windows[:-1])


def test_training_labels_point_at_the_answer_or_cls(tokenizer):
    context = "The 28,500-strong US Forces Korea is hosted by Seoul. " * 2 + "Filler words here. " * 60
    q = squad_question(context, "28,500")
    items = label_windows(tokenizer, [q], max_length=64, stride=16)
    labelled = [it for it in items if it.starts != (0,)]
    assert labelled, "the window holding the answer is labelled with it"
    for it in labelled:
        s, e = it.starts[0], it.ends[0]
        assert context[it.window.offsets[s][0] : it.window.offsets[e][1]] == "28,500"
    assert any(it.starts == (0,) and it.ends == (0,) for it in items), "windows without the answer point at [CLS]"
    impossible = SquadQuestion("q2", "Who?", "T", context, (), True, 0, 0)
    assert all(it.starts == (0,) for it in label_windows(tokenizer, [impossible], max_length=64, stride=16))


def test_span_decoding_respects_order_and_length(tokenizer):
    (w,) = make_windows(tokenizer, ["Q?"], ["alpha beta gamma delta epsilon"], max_length=32, stride=8)
    n = len(w.input_ids)
    start, end = np.full(n, -10.0, np.float32), np.full(n, -10.0, np.float32)
    start[w.context_start + 1], end[w.context_start + 2] = 5.0, 5.0  # "beta gamma"
    end[w.context_start] = 9.0  # an end before the start must not win
    (best,) = best_spans(w, start, end, top_n=1)
    assert "alpha beta gamma delta epsilon"[best.start : best.end] == "beta gamma"
    assert best_spans(w, start, end, max_answer_tokens=1, top_n=1)[0].end - best.start < len("beta gamma")
    assert pad_batch([w])["attention_mask"].sum() == n


def test_calibrator_learns_and_saves(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, len(FEATURES)))
    y = (x[:, 1] + 0.3 * rng.normal(size=2000) > 0).astype(int)
    cal = Calibrator.fit(x.tolist(), y.tolist())
    p = cal.probability(x.tolist())
    assert p[y == 1].mean() > 0.7 and p[y == 0].mean() < 0.3
    assert cal.rank(x.tolist())[y == 1].mean() > 0.8
    cal.reader_sha256 = "abc"
    cal.save(tmp_path / "c.json")
    again = Calibrator.load(tmp_path / "c.json", reader_sha256="abc")
    assert np.allclose(again.probability(x[:5].tolist()), p[:5])
    # One model: the score shown is the probability the candidates are ordered by.
    assert np.allclose(cal.rank(x.tolist()), p)


def test_calibration_is_tied_to_the_reader_weights(tmp_path):
    from rag.errors import ModelError

    x = np.random.default_rng(1).normal(size=(40, len(FEATURES)))
    cal = Calibrator.fit(x.tolist(), (x[:, 0] > 0).astype(int).tolist())
    cal.reader_sha256 = "weights-a"
    cal.save(tmp_path / "c.json")
    with pytest.raises(ModelError, match="refit it with: rag fit-calibration"):
        Calibrator.load(tmp_path / "c.json", reader_sha256="weights-b")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ModelError, match="refit"):
        Calibrator.load(tmp_path / "bad.json", reader_sha256="weights-a")


def test_missing_calibration_is_an_error_not_a_silent_fallback(tmp_path, embedder):
    import shutil

    from rag.errors import ModelError
    from rag.pipeline import QAPipeline

    folder = tmp_path / "reader"
    folder.mkdir()
    for name in ("model.safetensors", "config.json", "reader.json"):
        if (DEFAULT_READER_DIR / name).is_file():
            shutil.copy(DEFAULT_READER_DIR / name, folder / name)
    with pytest.raises(ModelError, match="fit it with: rag fit-calibration --reader heuristic"):
        QAPipeline.load("heuristic", reader_dir=folder, embedder=embedder)


def test_type_match_reads_the_shape_the_question_asks_for():
    from rag.decide import type_match
    from rag.reader.heuristic import expected_labels

    when = expected_labels("When did the war end?")
    assert type_match(when, "in 1763") == 1.0 and type_match(when, "the British army") == 0.0
    many = expected_labels("How many troops are stationed there?")
    assert type_match(many, "28,500") == 1.0 and type_match(many, "Seoul") == 0.0
    who = expected_labels("Who called South Korea a money machine?")
    assert type_match(who, "Donald Trump") == 1.0 and type_match(who, "in the morning") == 0.0
    assert type_match(expected_labels("Why must Japan invest more?"), "anything") == 0.5


def test_candidate_features_reward_agreement():
    def hit(i, text):
        return Hit(Chunk(i, "d", i, 0, len(text), text), 0.03, dense_score=0.5, lexical_score=3.0)

    passages = ["Seoul pays 28,500 won.", "It is 28,500.", "Nothing here."]
    hits = [hit(i, t) for i, t in enumerate(passages)]
    cands = [
        Candidate(0, 11, 17, 5.0, 1.0),
        Candidate(1, 6, 12, 4.0, 1.0),
        Candidate(2, 0, 7, 4.5, 1.0),
    ]
    rows = candidate_features(cands, hits, passages, "How much does Seoul pay?", lambda t: t.lower().split())
    agree = FEATURES.index("agreement")
    assert rows[0][agree] == rows[1][agree] == pytest.approx(2 / 3)
    assert rows[2][agree] == pytest.approx(1 / 3)


def test_alignment_sees_what_the_span_sentence_does_not_say():
    from itertools import pairwise

    from rag.decide import alignment
    from rag.lexical import BM25Index, LexicalSettings

    tokenize = BM25Index(LexicalSettings()).tokenize  # the features' own terms: stemmed, no stop words
    q = tokenize("Who is Japan's defence minister?")
    terms, pairs = set(q), set(pairwise(q))
    passage = (
        "Talks went on. Japan's prime minister Shigeru Ishiba spoke. Japan's defence minister Gen Nakatani met him."
    )
    named = passage.index("Gen Nakatani")
    near_miss = passage.index("Shigeru Ishiba")

    def align(q_terms, q_pairs, start, end):
        return alignment(q_terms, q_pairs, set(tokenize(passage[start:end])), passage, start, end, tokenize)

    right = align(terms, pairs, named, named + len("Gen Nakatani"))
    wrong = align(terms, pairs, near_miss, near_miss + len("Shigeru Ishiba"))
    # every asked term (japan, s, defenc, minist: not "who") in the answer's sentence, and 3 of 4 term pairs
    assert right == (1.0, 1.0, 0.0, 0.75)
    # "defence" is not in the near miss's sentence (it is in the next one, within the window)
    assert wrong == pytest.approx((3 / 4, 1.0, np.log1p(1), 1 / 4))
    # the span's own terms are not counted as asked: an answer that echoes the question does not align it
    assert align({"ishiba"}, set(), near_miss, near_miss + len("Shigeru Ishiba"))[0] == 0.0


@pytest.mark.skipif(not HAS_WEIGHTS, reason="no trained reader weights in rag/reader/weights/")
def test_trained_reader_reads_exact_spans(seed_text):
    from rag.reader.model import SpanReader

    reader = SpanReader.load()
    passages = [seed_text[5016:5502], seed_text[0:419]]
    readings = reader.read("How many troops are in US Forces Korea?", passages)
    best = max((c for r in readings for c in r.candidates), key=lambda c: c.score)
    assert passages[best.passage_index][best.start : best.end] == "28,500"
    torch_reader = SpanReader.load(backend="torch")
    a = reader.logits(pad_batch(make_windows(reader.tokenizer, ["Q?"] * 2, passages)))
    b = torch_reader.logits(pad_batch(make_windows(reader.tokenizer, ["Q?"] * 2, passages)))
    assert np.allclose(a[0], b[0], atol=1e-3) and np.allclose(a[1], b[1], atol=1e-3)


def test_best_threshold_f1_trades_answers_against_abstentions():
    from rag.offline.validate import best_threshold_f1

    # Two answerable (F1 1.0 and 0.5) and two unanswerable questions; margins rank them so that answering the
    # top two and abstaining on the rest gives (1 + 0.5 + 1 + 1) / 4.
    margins = [3.0, 2.0, 1.0, 0.0]
    answered = [1.0, 0.5, 0.0, 0.0]
    answerable = [True, True, False, False]
    assert best_threshold_f1(margins, answered, answerable) == 87.5
    # An unanswerable question ranked first: abstaining on everything (1 of 3 right) beats answering.
    assert best_threshold_f1([3.0, 2.0, 1.0], [0.0, 0.2, 0.2], [False, True, True]) == pytest.approx(33.33, abs=0.01)
    assert best_threshold_f1([], [], []) == 0.0


def test_base_model_path_can_be_overridden(monkeypatch, tmp_path):
    monkeypatch.setenv("RAG_BASE_MODEL_DIR", str(tmp_path))
    assert base_model_path() == str(tmp_path)


def test_answers_are_distinct_by_text_and_by_place():
    from rag.answer_text import is_distinct

    kept = [("doc", 100, 106, "28500")]
    assert not is_distinct(("doc", 100, 102, "28"), kept)  # inside a better answer
    assert not is_distinct(("doc", 100, 113, "28500strong"), kept)  # around it
    assert not is_distinct(("other", 5, 11, "28500"), kept)  # the same text elsewhere
    assert is_distinct(("doc", 106, 110, "us"), kept)  # touching is not overlapping
    assert is_distinct(("other", 100, 102, "28"), kept)  # the same place in another document


def _brute_force_spans(w, start, end, max_answer_tokens, top_n):
    """Every allowed (start, end) pair scored and fully sorted: what best_spans' partial selection must equal."""
    a, b = w.context_start, w.context_end
    pairs = [(float(start[i] + end[j]), i, j) for i in range(a, b) for j in range(i, min(b, i + max_answer_tokens))]
    pairs.sort(key=lambda p: (-p[0], -p[1], -p[2]))
    out = []
    for score, i, j in pairs[:top_n]:
        s, e = w.offsets[i][0], w.offsets[j][1]
        if e > s:
            out.append((s, e, round(score, 4)))
    return out


@settings(max_examples=300, deadline=None)
@given(
    length=st.integers(3, 256),
    context=st.tuples(st.integers(1, 60), st.integers(0, 256)),
    max_answer_tokens=st.integers(1, 40),
    top_n=st.integers(1, 30),
    seed=st.integers(0, 2**32 - 1),
)
def test_best_spans_equal_a_full_sort_of_every_allowed_span(length, context, max_answer_tokens, top_n, seed):
    rng = np.random.default_rng(seed)
    cs = min(context[0], length - 1)
    ce = min(length, cs + context[1])
    offsets = [(0, 0)] * cs + [(3 * t, 3 * t + rng.integers(0, 3)) for t in range(ce - cs)] + [(0, 0)] * (length - ce)
    w = Window(0, [0] * length, [0] * length, [(int(s), int(e)) for s, e in offsets], cs, ce)
    start = rng.normal(size=length).astype(np.float32)
    end = rng.normal(size=length).astype(np.float32)
    got = [
        (c.start, c.end, round(c.score, 4))
        for c in best_spans(w, start, end, max_answer_tokens=max_answer_tokens, top_n=top_n)
    ]
    assert got == _brute_force_spans(w, start, end, max_answer_tokens, top_n)
