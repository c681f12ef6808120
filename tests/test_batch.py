"""Many questions at once: the reader's batched path, QAPipeline.ask_batch, POST /ask/batch and `rag eval` over it.

The contract is "the same answers as one question at a time", checked on the real models over the seed index."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rag.pipeline import AskSettings, QAPipeline
from rag.reader.model import DEFAULT_READER_DIR
from tests.conftest import make_settings

HAS_WEIGHTS = (DEFAULT_READER_DIR / "model.safetensors").is_file()
needs_weights = pytest.mark.skipif(not HAS_WEIGHTS, reason="no trained reader weights in rag/reader/weights/")

QUESTIONS = [
    "How many troops are in US Forces Korea?",
    "Who is the Japanese prime minister who spoke with Trump on the phone?",
    "What tariff did Trump propose on imports from China?",
    "Who won the 1966 FIFA World Cup?",  # off-topic: no answer, in the middle of the batch
    "How many troops are in US Forces Korea?",  # asked twice
    "Why does South Korea worry about the alliance? " * 12,  # long: the reader cuts it to its token budget
    "Which country hosts American troops?",
]


def answers(result) -> list[tuple]:
    return [(a.text, a.doc_id, a.start, a.end, a.sentence_start, a.sentence_end, a.chunk_id) for a in result.answers]


def assert_same(one, many, *, score_tolerance: float) -> None:
    assert len(one) == len(many)
    for a, b in zip(one, many, strict=True):
        assert b.question == a.question and b.no_answer == a.no_answer
        assert answers(b) == answers(a), a.question
        assert [h.chunk.chunk_id for h in b.hits] == [h.chunk.chunk_id for h in a.hits]
        for x, y in zip(a.answers, b.answers, strict=True):
            assert abs(x.score - y.score) <= score_tolerance
        assert set(b.timings_ms) == set(a.timings_ms)


@pytest.fixture(scope="module")
def seed_index(seed_index_dir, embedder):
    from rag.engine import Engine

    engine = Engine(make_settings(seed_index_dir, reader="heuristic"), embedder)
    engine.reload()
    return engine.snapshot


@pytest.fixture(scope="module")
def trained(embedder):
    if not HAS_WEIGHTS:
        pytest.skip("no trained reader weights in rag/reader/weights/")
    return QAPipeline.load("trained", embedder=embedder)  # the service's runtime: int8


# ------------------------------------------------------------------------------------------------ the library


@needs_weights
def test_int8_batches_answer_exactly_as_one_question_at_a_time(trained, seed_index):
    """The service's default: int8 models, whose results depend on what else a pass holds, so each question
    keeps its own passes; the answers and their scores are identical."""
    assert not trained.reader.pass_invariant and not trained.embedder.pass_invariant
    trained.embedder._cache.clear()
    one = [trained.ask(seed_index, q, top_k=5) for q in QUESTIONS]
    trained.embedder._cache.clear()  # the batch embeds its questions itself
    many = trained.ask_batch(seed_index, QUESTIONS, top_k=5)
    assert_same(one, many, score_tolerance=0.0)
    assert any(r.answers for r in many) and many[3].no_answer
    batch_ms = sum(r.timings_ms["total"] for r in many)
    assert all(0 < r.timings_ms["read"] <= batch_ms for r in many)


@needs_weights
def test_fp32_reader_shares_passes_across_questions_and_reads_the_same_spans(trained, seed_index):
    from rag.reader.model import SpanReader

    reader = SpanReader.load(backend="onnx")
    assert reader.pass_invariant
    items = []
    for q in QUESTIONS:
        hits, _ = trained.search(seed_index, q, 3)
        items.append((q, [h.chunk.text for h in hits]))
    items.append(("Nothing to read?", []))
    one = [reader.read(q, passages) for q, passages in items]
    # Five windows a pass: every pass mixes questions, and most questions are split over two passes.
    many = reader.read_many(items, batch_windows=5, exact=True)
    assert len(many) == len(one) and many[-1] == []
    for a, b in zip(one, many, strict=True):
        assert [[(c.start, c.end) for c in r.candidates] for r in b] == [
            [(c.start, c.end) for c in r.candidates] for r in a
        ]
        for ra, rb in zip(a, b, strict=True):
            assert rb.null_score == pytest.approx(ra.null_score, abs=1e-3)
            assert rb.log_norm == pytest.approx(ra.log_norm, abs=1e-3)
            for ca, cb in zip(ra.candidates, rb.candidates, strict=True):
                assert cb.score == pytest.approx(ca.score, abs=1e-3)


@needs_weights
def test_fp32_pipeline_batches_give_the_same_answers(trained, seed_index):
    from rag.embedding import Embedder
    from rag.reader.model import SpanReader

    embedder = Embedder(backend="onnx").load()
    assert embedder.pass_invariant
    pipeline = QAPipeline(
        embedder,
        SpanReader.load(backend="onnx"),
        trained.calibrator,
        reader_kind="trained",
        settings=replace(trained.settings, exact_batches=False),
    )
    one = [pipeline.ask(seed_index, q) for q in QUESTIONS]
    embedder._cache.clear()
    many = pipeline.ask_batch(seed_index, QUESTIONS)
    assert_same(one, many, score_tolerance=1e-3)


@needs_weights
def test_int8_batches_may_share_passes_when_asked_to(trained, seed_index):
    """``exact_batches=False``: faster, and not exact; every answer is still a cited span of its document."""
    loose = QAPipeline(
        trained.embedder,
        trained.reader,
        trained.calibrator,
        reader_kind="trained",
        settings=AskSettings(exact_batches=False, no_answer_threshold=0.0),
    )
    results = loose.ask_batch(seed_index, QUESTIONS, top_k=3)
    assert [r.question for r in results] == QUESTIONS
    for r in results:
        assert r.answers and len(r.hits) == 3
        for a in r.answers:
            text = seed_index.documents[a.doc_id].text
            assert text[a.start : a.end] == a.text and text[a.sentence_start : a.sentence_end] == a.sentence


def test_heuristic_batches_loop_with_the_same_answers(heuristic_pipeline, seed_index):
    one = [heuristic_pipeline.ask(seed_index, q, top_k=2, max_answers=2) for q in QUESTIONS]
    many = heuristic_pipeline.ask_batch(seed_index, QUESTIONS, top_k=2, max_answers=2)
    assert_same(one, many, score_tolerance=0.0)
    assert heuristic_pipeline.ask_batch(seed_index, []) == []


def test_batch_options_are_checked_like_ask(heuristic_pipeline, seed_index):
    from rag.errors import ValidationError

    with pytest.raises(ValidationError, match="top_k must be between 1 and 50, got 0"):
        heuristic_pipeline.ask_batch(seed_index, QUESTIONS, top_k=0)


# ------------------------------------------------------------------------------------------------ HTTP


@pytest.fixture
def client(tmp_path, seed_index_dir, embedder, heuristic_pipeline):
    from rag.engine import Engine
    from service.main import create_app

    folder = tmp_path / "index"
    shutil.copytree(seed_index_dir, folder)
    settings = make_settings(folder, reader="heuristic")
    engine = Engine(settings, embedder, heuristic_pipeline)
    engine.reload()
    return TestClient(create_app(settings, engine=engine))


def without_timings(body: dict) -> dict:
    return {k: v for k, v in body.items() if k != "timings_ms"}


def test_ask_batch_over_http_answers_in_order_as_ask_does(client):
    questions = [f"  {q}\n" for q in QUESTIONS[:4]]  # trimmed as /ask trims
    r = client.post("/ask/batch", json={"questions": questions, "top_k": 3, "max_answers": 2})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [b["question"] for b in results] == [q.strip() for q in questions]
    for q, got in zip(questions, results, strict=True):
        alone = client.post("/ask", json={"question": q, "top_k": 3, "max_answers": 2}).json()
        assert without_timings(got) == without_timings(alone)
        assert {"embed", "retrieve", "read", "decide", "total"} <= set(got["timings_ms"])
    metrics = client.get("/metrics").text
    assert "rag_requests_total" in metrics


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"questions": []}, "at least 1"),
        ({"questions": ["Why?"] * 65}, "at most 64"),
        ({"questions": ["Why?", "ok?", "  "]}, "questions.2"),
        ({"questions": ["Why?", "x" * 1001]}, "questions.1"),
        ({"questions": ["bad \x07 bell"]}, "control characters"),
        ({"questions": "Why?"}, "questions"),
        ({"questions": ["Why?"], "top_k": 0}, "top_k"),
        ({"questions": ["Why?"], "top_k": True}, "top_k"),
        ({"questions": ["Why?"], "question": "Why?"}, "unknown field"),
        ({"question": "Why?"}, "questions"),
    ],
)
def test_bad_batches_get_a_422_that_names_the_problem(client, body, fragment):
    r = client.post("/ask/batch", json=body)
    assert r.status_code == 422, r.text
    assert fragment in r.json()["error"]["message"], r.json()


def test_the_schema_documents_the_batch_limits(client):
    schema = client.get("/openapi.json").json()
    assert "post" in schema["paths"]["/ask/batch"]
    questions = schema["components"]["schemas"]["AskBatchRequest"]["properties"]["questions"]
    assert (questions["minItems"], questions["maxItems"]) == (1, 64)
    assert (questions["items"]["minLength"], questions["items"]["maxLength"]) == (1, 1000)
    assert "64" in questions["description"]


# ------------------------------------------------------------------------------------------------ rag eval


def test_rag_eval_goes_through_batches_with_the_same_output(tmp_path: Path, client, seed_text):
    from rag.evaluation.datasets import load_jsonl_gold
    from rag.evaluation.harness import run_eval
    from rag.evaluation.report import write_run
    from rag.evaluation.results import EvalRun, RunOptions
    from rag.evaluation.targets import Target

    start = seed_text.index("28,500")
    records = [
        {"id": f"q{i}", "question": q, "answers": [{"text": "28,500", "start": start, "end": start + 6}]}
        | {"document_id": "000_9ac6261989c5b459"}
        for i, q in enumerate(QUESTIONS)
    ] + [{"id": "long", "question": "Why? " * 201, "answerable": False}]  # refused alone too: the batch falls back
    gold_path = tmp_path / "gold.jsonl"
    gold_path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    gold = load_jsonl_gold(gold_path)
    engine = client.app.state.engine
    from service.main import create_app

    target = Target(mode="in-process", settings=engine.settings, engine=engine, app_factory=create_app)

    def evaluated(size: int) -> EvalRun:
        done: list[int] = []
        run = run_eval(gold, target, RunOptions(batch_size=size, concurrency=2), on_result=lambda: done.append(1))
        assert len(done) == len(records)  # the progress bar advanced once per question
        write_run(run, tmp_path / f"out-{size}", "batch")
        return run

    assert evaluated(1).batch_size == 1 and evaluated(3).batch_size == 3

    def rows(size: int) -> list[dict]:
        lines = (tmp_path / f"out-{size}" / "results.jsonl").read_text().splitlines()
        drop = {"latency_ms", "timings_ms"}
        return [{k: v for k, v in json.loads(line).items() if k not in drop} for line in lines]

    assert rows(3) == rows(1)
    assert rows(1)[-1]["error"] and "422" in rows(1)[-1]["error"]
    summaries = [json.loads((tmp_path / f"out-{s}" / "summary.json").read_text()) for s in (1, 3)]
    for key in ("retrieval", "answers", "abstention", "citations", "calibration", "errors", "n"):
        assert summaries[0][key] == summaries[1][key], key
    assert (summaries[0]["batch_size"], summaries[1]["batch_size"]) == (1, 3)
