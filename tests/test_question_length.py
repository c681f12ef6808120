"""Questions of every length POST /ask accepts (1 to 1,000 characters) are answered or declined, never a crash.

Every length goes through ``make_windows`` with the real tokenizer (cheap, one batch per kind of text); a
sample goes through the service over HTTP, with both readers, and through ``rag ask``. Before the question
budget, a question of ~180 tokens or more made the tokenizer panic (``stride must be strictly less than
max_len``): an HTTP 500 and a traceback from ``rag ask``.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rag.errors import ValidationError
from rag.reader.model import DEFAULT_READER_DIR, base_model_path
from rag.reader.windows import Window, fit_questions, make_windows
from service.schemas.common import MAX_QUESTION_CHARS
from tests.conftest import make_settings

HAS_WEIGHTS = (DEFAULT_READER_DIR / "model.safetensors").is_file()
BUDGET = 64  # make_windows' default max_question_tokens

# Each kind repeats to any length; together they cover one token per character (CJK, single letters), [UNK]
# (emoji, a word too long for WordPiece), accents the normaliser strips, and right-to-left scripts.
KINDS = {
    "words": "How many troops are in US Forces Korea, and who pays for them under the new agreement? ",
    "letters": "a b c d e f g h ",
    "numbers": "28,500 (1.5%) $3.2bn; 2024-11-08? ",
    "cjk": "驻韩美军有多少士兵，谁为他们付费？",
    "emoji": "👍🏽🇰🇷❤️‍🔥🙂 ",
    "combining": "e\u0301a\u0308 n\u0303o\u0328 Z\u0335\u0321a\u0336\u0322 ",
    "rtl": "כמה חיילים יש בקוריאה? كم عدد الجنود في كوريا؟ ",
    "one_word": "x",
}


def question(kind: str, n: int) -> str:
    text = KINDS[kind]
    return (text * (n // len(text) + 1))[:n]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model_path())


@pytest.fixture(scope="module")
def passage(seed_text) -> str:
    return seed_text[4800:5800]  # about 200 tokens: one or two windows


def reference_windows(tokenizer, questions, passages, max_length=256, stride=96) -> list[Window]:
    """``make_windows`` as it was before the question budget, the windows the reader was trained on."""
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
    out = []
    for i, ids in enumerate(enc["input_ids"]):
        seq = enc.sequence_ids(i)
        ctx = [t for t, s in enumerate(seq) if s == 1]
        offsets = [(a, b) if seq[t] == 1 else (0, 0) for t, (a, b) in enumerate(enc["offset_mapping"][i])]
        out.append(
            Window(
                int(enc["overflow_to_sample_mapping"][i]),
                list(ids),
                list(enc["token_type_ids"][i]),
                offsets,
                ctx[0],
                ctx[-1] + 1,
            )
        )
    return out


def check_windows(
    windows: list[Window], n_questions: int, passage: str, max_length: int = 256, overlap: bool = True
) -> None:
    """Every pair has windows; each holds passage tokens; together they cover the passage, overlapping."""
    by_pair: dict[int, list[Window]] = defaultdict(list)
    for w in windows:
        by_pair[w.passage_index].append(w)
    assert sorted(by_pair) == list(range(n_questions))
    words = passage.split()
    first, last = passage.index(words[0]), passage.rindex(words[-1]) + len(words[-1])
    for ws in by_pair.values():
        for w in ws:
            assert len(w.input_ids) <= max_length
            assert w.context_end > w.context_start, "a window without passage tokens"
            assert 0 <= w.offsets[w.context_start][0] < w.offsets[w.context_end - 1][1] <= len(passage)
        assert ws[0].offsets[ws[0].context_start][0] == first
        assert ws[-1].offsets[ws[-1].context_end - 1][1] == last
        for a, b in zip(ws, ws[1:], strict=False) if overlap else ():
            assert b.offsets[b.context_start][0] < a.offsets[a.context_end - 1][1]


@pytest.mark.parametrize("kind", KINDS)
def test_every_question_length_leaves_room_for_the_passage(tokenizer, passage, kind):
    questions = [question(kind, n) for n in range(1, MAX_QUESTION_CHARS + 1)]
    windows = make_windows(tokenizer, questions, [passage] * len(questions))
    check_windows(windows, len(questions), passage)
    assert max(w.context_start - 2 for w in windows) <= BUDGET  # question tokens, between [CLS] and [SEP]
    # Questions within the budget get exactly the windows they got before it (the reader's results stand).
    lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
    short = [i for i, n in enumerate(lengths) if n <= BUDGET]
    assert short, "every kind has questions within the budget"
    expected = reference_windows(tokenizer, [questions[i] for i in short], [passage] * len(short))
    kept = set(short)
    assert [w for w in windows if w.passage_index in kept] == [
        replace(w, passage_index=short[w.passage_index]) for w in expected
    ]


def check_fit(tokenizer, q: str) -> None:
    """A long question is cut to exactly its first BUDGET tokens, a prefix of the text; a short one is kept."""
    (cut,) = fit_questions(tokenizer, [q], BUDGET)
    ids = tokenizer(q, add_special_tokens=False)["input_ids"]
    assert q.startswith(cut)
    if len(ids) <= BUDGET:
        assert cut == q
    else:
        assert tokenizer(cut, add_special_tokens=False)["input_ids"] == ids[:BUDGET]


@pytest.mark.parametrize("kind", KINDS)
def test_long_questions_keep_their_first_tokens(tokenizer, kind):
    for n in (1, 100, 300, 887, 999, MAX_QUESTION_CHARS):
        check_fit(tokenizer, question(kind, n))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    q=st.one_of(
        st.text(min_size=1, max_size=MAX_QUESTION_CHARS),
        st.lists(
            st.sampled_from(["who", "paid", "28,500", "Seoul's", "naïve", "東京", "🙂", "\u0301"]),
            min_size=1,
            max_size=300,
        )
        .map(" ".join)
        .map(lambda s: s[:MAX_QUESTION_CHARS]),
    )
)
def test_any_question_text_fits(tokenizer, passage, q):
    check_fit(tokenizer, q)
    check_windows(make_windows(tokenizer, [q, q], [passage, passage]), 2, passage)


@pytest.mark.parametrize(
    ("max_length", "stride", "max_question_tokens"),
    [(256, 96, 64), (32, 8, 64), (64, 16, 64), (64, 60, 64), (5, 4, 64), (256, 255, 64), (256, 96, 1), (384, 128, 500)],
)
def test_small_windows_and_large_strides_adapt(tokenizer, passage, max_length, stride, max_question_tokens):
    questions = [question("letters", MAX_QUESTION_CHARS), question("words", 20), question("cjk", 400)]
    windows = make_windows(
        tokenizer,
        questions,
        [passage] * 3,
        max_length=max_length,
        stride=stride,
        max_question_tokens=max_question_tokens,
    )
    check_windows(windows, 3, passage, max_length, overlap=max_length > 5)  # 5: one passage token, no overlap
    # The question keeps at most half the room besides the special tokens, so the passage always gets the rest.
    assert max(w.context_start - 2 for w in windows) <= min(max_question_tokens, (max_length - 3) // 2)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_question_tokens": 0}, "max_question_tokens"),
        ({"max_length": 4}, "max_length"),
        ({"stride": -1}, "stride"),
    ],
)
def test_bad_window_settings_are_named(tokenizer, kwargs, fragment):
    with pytest.raises(ValidationError, match=fragment):
        make_windows(tokenizer, ["Q?"], ["A passage."], **kwargs)


# ------------------------------------------------------------------------------------------- HTTP and CLI

rng = random.Random(12)
VOCAB = ["who", "what", "when", "troops", "Korea", "Seoul", "pays", "tariff", "28,500", "alliance", "Trump"]
SAMPLE = [question(kind, n) for kind in KINDS for n in (887, MAX_QUESTION_CHARS)] + [
    " ".join(rng.choice(VOCAB) for _ in range(200))[: rng.randint(1, MAX_QUESTION_CHARS)] for _ in range(6)
]


@pytest.fixture(scope="module")
def engines(seed_index_dir, embedder, heuristic_pipeline):
    """Engines over the session's seed index: one per reader (the trained one where its weights are shipped)."""
    from rag.engine import Engine
    from rag.pipeline import QAPipeline

    pipelines = {"heuristic": heuristic_pipeline}
    if HAS_WEIGHTS:
        pipelines["trained"] = QAPipeline.load("trained", embedder=embedder)
    out = {}
    for kind, pipeline in pipelines.items():
        settings = make_settings(seed_index_dir, reader=kind)
        engine = Engine(settings, embedder, pipeline)
        engine.reload()
        out[kind] = (settings, engine)
    return out


@pytest.mark.parametrize("reader", ["trained", "heuristic"])
def test_ask_over_http_never_fails_on_a_question_it_accepts(engines, reader):
    from service.main import create_app

    if reader not in engines:
        pytest.skip("no trained reader weights in rag/reader/weights/")
    settings, engine = engines[reader]
    client = TestClient(create_app(settings, engine=engine), raise_server_exceptions=False)
    for q in SAMPLE:
        r = client.post("/ask", json={"question": q, "top_k": 2})
        assert r.status_code == (200 if q.strip() else 422), (len(q), q[:40], r.status_code, r.text[:300])
        body = r.json()
        if r.status_code == 200:
            assert body["question"] == q.strip()
            for a in body["answers"]:
                c = a["context_offset"]
                assert a["context"][c["start"] : c["end"]] == a["text"]
    r = client.post("/ask", json={"question": "x" * (MAX_QUESTION_CHARS + 1)})
    assert r.status_code == 422 and "question" in r.text


def test_rag_ask_answers_or_declines_any_question_length(engines, seed_index_dir, monkeypatch):
    from cli import app
    from rag.engine import Engine

    runner = CliRunner()
    # One run opens the index and loads the models as a user's would ...
    r = runner.invoke(app, ["ask", question("words", MAX_QUESTION_CHARS), "--index", str(seed_index_dir), "--json"])
    assert r.exit_code in (0, 1), r.output
    assert json.loads(r.stdout)["question"] == question("words", MAX_QUESTION_CHARS).strip()
    # ... the sample reuses a loaded engine (the HTTP test reads it with both readers): what runs here is the
    # CLI's own handling, printing any text.
    _, engine = engines["heuristic"]
    monkeypatch.setattr(Engine, "open", classmethod(lambda cls, settings, **kw: engine))
    for q in SAMPLE:
        r = runner.invoke(app, ["ask", q, "--index", str(seed_index_dir)])
        assert r.exit_code in (0, 1), (len(q), q[:40], r.exit_code, r.output[-500:], r.exception)
