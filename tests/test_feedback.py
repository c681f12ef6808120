"""Feedback on answers (rag/feedback.py, service/routers/feedback.py): checked, durable, bounded, exported as gold."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rag.errors import ValidationError
from rag.evaluation.datasets import load_jsonl_gold
from rag.feedback import FeedbackFull, FeedbackStore, Span, export_gold, make_record
from rag.types import Document
from service.main import create_app
from tests.test_service import KEY, SEED_ID, assert_error, engine_factory  # noqa: F401 - the fixture

DOC = Document(id="d1", title="Bridge", text="The bridge was opened in 1932. It carries trains and cars.")
OTHER = Document(id="d2", title="Ferry", text="The ferry leaves at noon.")

ROOT = Path(__file__).resolve().parent.parent


def _docs(*docs: Document):
    by_id = {d.id: d for d in docs}
    return lambda doc_id: by_id.get(doc_id)


def _span(doc: Document, text: str) -> tuple[str, int, int]:
    start = doc.text.index(text)
    return doc.id, start, start + len(text)


# ------------------------------------------------------------------------------------------------ records


def test_a_record_keeps_the_span_text_and_the_documents_checksum():
    r = make_record("When was the bridge opened?", "answer_is", _docs(DOC), answer=_span(DOC, "1932"))
    assert r.answer == Span("d1", 25, 29, "1932", DOC.checksum)
    assert r.shown is None and r.verdict == "answer_is"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"verdict": "answer_is"}, "needs 'answer'"),
        ({"verdict": "right"}, "needs 'shown'"),
        ({"verdict": "maybe"}, "verdict must be one of"),
        ({"verdict": "answer_is", "answer": ("d1", 20, 500)}, "0 <= start < end <= 58"),
        ({"verdict": "answer_is", "answer": ("d1", 5, 5)}, "0 <= start < end"),
        ({"verdict": "answer_is", "answer": ("nope", 0, 3)}, "no document with id 'nope'"),
        ({"verdict": "answer_is", "answer": ("d1", 30, 31)}, "only whitespace"),
    ],
)
def test_bad_records_are_refused_naming_the_problem(kwargs, fragment):
    with pytest.raises(ValidationError, match=fragment):
        make_record("When was the bridge opened?", get_document=_docs(DOC), **kwargs)


# ------------------------------------------------------------------------------------------------- export


def rec(verdict, at, **kw):
    """A record checked against DOC and OTHER, dated ``at`` (the order the export resolves them in)."""
    r = make_record(kw.pop("question", "When was the bridge opened?"), verdict, _docs(DOC, OTHER), **kw)
    return replace(r, created=at)


def test_export_conflict_rules_the_latest_verdict_wins():
    year, trains = _span(DOC, "1932"), _span(DOC, "trains and cars")
    records = [
        rec("right", 1, shown=trains),  # right, then wrong on the same span: a negative, not gold
        rec("wrong", 2, shown=trains),
        rec("answer_is", 3, answer=year),  # gold
        rec("wrong", 4, shown=year, question="What does the bridge carry?"),  # wrong alone: no gold for it
        rec("not_in_articles", 5, question="Who built the ferry?"),
        rec("answer_is", 6, question="Who built the ferry?", answer=_span(OTHER, "ferry")),
        rec("not_in_articles", 7, question="Who built the ferry?"),  # the latest: unanswerable
    ]
    exported = export_gold(records, _docs(DOC, OTHER))
    by_question = {g["question"]: g for g in exported.gold}
    assert set(by_question) == {"When was the bridge opened?", "Who built the ferry?"}
    assert by_question["When was the bridge opened?"]["answers"] == [
        {"text": "1932", "document_id": "d1", "start": 25, "end": 29}
    ]
    assert by_question["Who built the ferry?"] == {
        "id": by_question["Who built the ferry?"]["id"],
        "question": "Who built the ferry?",
        "answerable": False,
        "answers": [],
    }
    assert sorted(n["text"] for n in exported.negatives) == ["1932", "trains and cars"]
    assert exported.stale == 0 and exported.records == 7


def test_feedback_on_a_document_that_changed_or_went_is_stale_and_left_out(tmp_path):
    records = [
        rec("answer_is", 1, answer=_span(DOC, "1932")),
        rec("answer_is", 2, question="Q2?", answer=_span(OTHER, "noon")),
    ]
    changed = Document(id="d1", title="Bridge", text=DOC.text.replace("1932", "1933"))
    exported = export_gold(records, _docs(changed))  # d1 replaced, d2 deleted
    assert exported.gold == [] and exported.stale == 2


def test_the_export_is_a_gold_set_rag_eval_reads(tmp_path):
    from rag.feedback import write_jsonl

    records = [rec("answer_is", 1, answer=_span(DOC, "1932")), rec("not_in_articles", 2, question="Who?")]
    path = write_jsonl(export_gold(records, _docs(DOC)).gold, tmp_path / "gold.jsonl")
    gold = load_jsonl_gold(path)
    assert [(i.question, i.answerable) for i in gold.items] == [("When was the bridge opened?", True), ("Who?", False)]


# ------------------------------------------------------------------------------------------------ storage


def test_the_store_is_bounded_and_skips_a_line_torn_by_a_crash(tmp_path):
    store = FeedbackStore(tmp_path / "fb" / "feedback.jsonl", max_bytes=1200)
    store.append(rec("answer_is", 1, answer=_span(DOC, "1932")))
    with open(store.path, "a") as fh:
        fh.write('{"question": "torn')  # a crash in the middle of a write
    assert len(store.records()) == 1
    with pytest.raises(FeedbackFull, match="its limit is 1,200"):
        for i in range(20):
            store.append(rec("not_in_articles", i, question=f"Question {i}?"))
    assert store.path.stat().st_size <= 1200


KILLED_WRITER = """
import sys
from rag.feedback import FeedbackRecord, FeedbackStore
store = FeedbackStore(sys.argv[1])
i = 0
while True:
    store.append(FeedbackRecord(question=f"Question {i}?", verdict="not_in_articles", id=f"r{i}"))
    print(i, flush=True)  # acknowledged: fsynced
    i += 1
"""


def test_acknowledged_feedback_survives_a_sigkill(tmp_path):
    path = tmp_path / "feedback.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    acknowledged = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while len(acknowledged) < 30 and time.monotonic() < deadline:
        acknowledged.append(int(proc.stdout.readline()))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = {r.id for r in FeedbackStore(path).records()}
    assert {f"r{i}" for i in acknowledged} <= kept


# --------------------------------------------------------------------------------------------------- HTTP


def _ask_and_answer(client):
    body = client.post("/ask", json={"question": "How many troops are in US Forces Korea?", "max_answers": 1}).json()
    a = body["answers"][0]
    return {"document_id": a["document_id"], "start": a["document_offset"]["start"], "end": a["document_offset"]["end"]}


def test_feedback_over_http_is_kept_and_exported_with_the_key(engine_factory):  # noqa: F811
    settings, engine = engine_factory(api_key=KEY)
    client = TestClient(create_app(settings, engine=engine))
    shown = _ask_and_answer(client)
    r = client.post("/feedback", json={"question": "How many troops?", "verdict": "right", "shown": shown})
    assert r.status_code == 200, r.text
    assert r.json()["records"] == 1 and r.json()["generation"] == engine.snapshot.generation
    r = client.post("/feedback", json={"question": "Who won the 1950 cup?", "verdict": "not_in_articles"})
    assert r.json()["questions"] == 2
    assert client.get("/feedback/summary").json() == {
        "mode": "open",
        "records": 2,
        "questions": 2,
        "last_evaluation": None,
    }
    assert_error(client.get("/feedback/export"), 401, "Bearer")
    export = client.get("/feedback/export", headers={"Authorization": f"Bearer {KEY}"})
    assert export.status_code == 200 and export.headers["x-feedback-stale"] == "0"
    gold = [json.loads(line) for line in export.text.splitlines()]
    assert [(g["question"], g["answerable"]) for g in gold] == [
        ("How many troops?", True),
        ("Who won the 1950 cup?", False),
    ]
    # the feedback survives a restart: a new app over the same folder reads it back
    again = TestClient(create_app(settings, engine=engine))
    assert again.get("/feedback/summary").json()["records"] == 2


def test_the_summary_shows_the_last_evaluation_on_the_feedback(engine_factory):  # noqa: F811
    settings, engine = engine_factory()
    client = TestClient(create_app(settings, engine=engine))
    # A real run's summary (rag eval writes this file; rag feedback eval writes it here).
    run = json.loads((ROOT / "eval" / "results" / "seed-trained" / "summary.json").read_text())
    folder = settings.feedback_evaluation_dir()
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(run))
    last = client.get("/feedback/summary").json()["last_evaluation"]
    assert last["questions"] == run["n"] and last["created"] == run["created"]
    assert last["f1"] == round(100 * run["abstention"]["overall_f1"], 1)
    assert last["em"] == round(100 * run["abstention"]["overall_em"], 1)
    assert 0 <= last["answered"] <= 100
    # Users' annotations are often all answerable: then there is no no-answer accuracy at all.
    run["abstention"] |= {"n_unanswerable": 0, "no_ans_accuracy": None}
    run["answers"] |= {"n_answered": 12}
    (folder / "summary.json").write_text(json.dumps(run))
    assert client.get("/feedback/summary").json()["last_evaluation"]["answered"] == round(100 * 12 / run["n"], 1)
    (folder / "summary.json").write_text("{torn")
    assert client.get("/feedback/summary").json()["last_evaluation"] is None


def test_bad_feedback_gets_a_422_naming_the_problem(engine_factory):  # noqa: F811
    settings, engine = engine_factory()
    client = TestClient(create_app(settings, engine=engine))
    span = {"document_id": SEED_ID, "start": 10, "end": 10**6}
    assert_error(client.post("/feedback", json={"question": "Q?", "verdict": "answer_is", "answer": span}), 422, "end")
    assert_error(client.post("/feedback", json={"question": "Q?", "verdict": "right"}), 422, "needs 'shown'")
    assert_error(client.post("/feedback", json={"question": "Q?", "verdict": "meh"}), 422, "verdict")


def test_feedback_modes_off_and_key_and_the_open_rate_limit(engine_factory):  # noqa: F811
    off_settings, engine = engine_factory(feedback="off")
    off = TestClient(create_app(off_settings, engine=engine))
    assert_error(off.post("/feedback", json={"question": "Q?", "verdict": "not_in_articles"}), 403, "switched off")
    key_settings, engine = engine_factory(feedback="key", api_key=KEY)
    keyed = TestClient(create_app(key_settings, engine=engine))
    body = {"question": "Q?", "verdict": "not_in_articles"}
    assert_error(keyed.post("/feedback", json=body), 401, "Bearer")
    assert keyed.post("/feedback", json=body, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    open_settings, engine = engine_factory(feedback="open", feedback_per_minute=3)
    limited = TestClient(create_app(open_settings, engine=engine))
    codes = [
        limited.post("/feedback", json={"question": f"Q{i}?", "verdict": "not_in_articles"}).status_code
        for i in range(5)
    ]
    assert codes == [200, 200, 200, 429, 429]


def test_feedback_defaults_to_the_key_on_a_network_host():
    from rag.settings import Settings

    assert Settings(_env_file=None, host="0.0.0.0").feedback_mode() == "key"
    assert Settings(_env_file=None, host="127.0.0.1").feedback_mode() == "open"


def test_rag_feedback_export_writes_the_gold_set_and_says_what_it_left_out(tmp_path, seed_index_dir):
    import shutil

    from typer.testing import CliRunner

    from cli import app
    from rag.settings import Settings
    from rag.store import CorpusIndex

    folder = tmp_path / "index"
    shutil.copytree(seed_index_dir, folder)
    store = FeedbackStore(Settings(_env_file=None, index_dir=folder).feedback_path())
    indexed = CorpusIndex.load(folder).get(SEED_ID)
    start = indexed.text.index("28,500")
    get = _docs(indexed)
    store.append(make_record("How many troops?", "answer_is", get, answer=(SEED_ID, start, start + 6)))
    store.append(make_record("Who won the cup?", "not_in_articles", get))
    result = CliRunner().invoke(app, ["feedback", "export", "--index", str(folder)])
    assert result.exit_code == 0, result.output
    assert "2 questions (1 answerable, 1 not in the articles) from 2 records; 0 stale" in result.output
    gold = load_jsonl_gold(folder / "feedback" / "gold.jsonl")
    assert [a.text for i in gold.items for a in i.answers] == ["28,500"]
