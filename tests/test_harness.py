"""The evaluation harness: scoring rules on hand-made responses, the BEIR path and retries through a mock
transport, the CLI's exit codes, and one end-to-end run in-process against the app over the seed index."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from rag.document_ids import slug_id
from rag.evaluation.datasets import GoldAnswer, GoldItem, GoldSet, GoldSpan, load_jsonl_gold
from rag.evaluation.harness import evaluate, run_eval
from rag.evaluation.metrics import exact_match, f1
from rag.evaluation.report import write_results_table, write_run
from rag.evaluation.results import EvalRun, Observation, PredictedAnswer, RunOptions
from rag.evaluation.scoring import score_item
from rag.evaluation.server import free_port
from rag.evaluation.summary import summarize
from rag.evaluation.targets import Target
from tests.conftest import SEED_DIR, make_settings

DOC = "doc-a"
TEXT = "Intro. Ann Lee founded the club in 1990 in Oslo. The end."


def _item(qid: str, answer: str | None, *, doc: str = DOC) -> GoldItem:
    if answer is None:
        return GoldItem(id=qid, question=f"{qid}?", answerable=False)
    start = TEXT.index(answer)
    span = GoldSpan(doc, start, start + len(answer))
    return GoldItem(
        id=qid,
        question=f"{qid}?",
        answerable=True,
        answers=(GoldAnswer(answer, doc, span.start, span.end),),
        spans=(span,),
    )


def _answer(text: str, score: float, *, shift: int = 0, doc: str = DOC) -> PredictedAnswer:
    start = TEXT.index(text) + shift
    return PredictedAnswer(text, score, doc, start, start + len(text))


# ---------------------------------------------------------------------------------------------- scoring


def test_score_item_answer_rank_and_citations() -> None:
    item = _item("who", "Ann Lee")
    passages = ((DOC, 0, 10), ("other", 0, 100), (DOC, 0, len(TEXT)))  # the third holds the whole answer
    answers = (_answer("Ann Lee", 0.8), _answer("Oslo", 0.3, shift=1))
    obs = Observation(latency_ms=12.0, no_answer=False, answers=answers, passages=passages, timings_ms={"total": 9.0})
    r = score_item(item, obs, "qa", {DOC: TEXT})
    assert r.rank == 3 and r.prediction == "Ann Lee" and (r.em, r.f1) == (1.0, 1.0)
    assert r.citations_ok == (True, False)  # the second answer's offsets are off by one
    assert r.top_document_gold is True and r.correct is True and r.score == 0.8


def test_score_item_abstentions_are_scored_squad2_style() -> None:
    abstained = Observation(latency_ms=1.0, no_answer=True)
    answered = Observation(latency_ms=1.0, no_answer=False, answers=(_answer("Oslo", 0.9),))
    wrongly_abstained = score_item(_item("who", "Ann Lee"), abstained, "qa", {})
    assert (wrongly_abstained.prediction, wrongly_abstained.em, wrongly_abstained.f1) == ("", 0.0, 0.0)
    assert wrongly_abstained.score is None and wrongly_abstained.correct is None
    rightly_abstained = score_item(_item("none", None), abstained, "qa", {})
    assert (rightly_abstained.em, rightly_abstained.f1) == (1.0, 1.0) and rightly_abstained.rank is None
    answered_unanswerable = score_item(_item("none", None), answered, "qa", {DOC: TEXT})
    assert (answered_unanswerable.em, answered_unanswerable.f1) == (0.0, 0.0)
    assert answered_unanswerable.correct is False and answered_unanswerable.top_document_gold is None
    partial = score_item(_item("who", "Ann Lee"), Observation(1.0, False, (_answer("Lee", 0.4),)), "qa", {})
    assert partial.em == 0.0 and partial.f1 == pytest.approx(2 / 3) and partial.correct is True
    assert partial.citations_ok == (False,)  # the document text was not available


def test_a_declined_question_is_scored_on_its_best_possible_answer() -> None:
    declined = Observation(5.0, True, (), (), possible=(_answer("Ann Lee", 0.3), _answer("Oslo", 0.1)))
    result = score_item(_item("who", "Ann Lee"), declined, "qa", {})
    assert result.no_answer and result.prediction == "" and result.score is None
    assert result.candidate_score == 0.3 and result.candidate_right is True


def test_summary_aggregates_by_hand() -> None:
    items = (_item("a", "Ann Lee"), _item("b", "1990"), _item("c", None))
    results = (
        score_item(items[0], Observation(10.0, False, (_answer("Ann Lee", 0.95),), ((DOC, 0, 30),)), "qa", {DOC: TEXT}),
        score_item(items[1], Observation(20.0, True, (), (("x", 0, 5), (DOC, 30, 50))), "qa", {DOC: TEXT}),
        score_item(items[2], Observation(30.0, False, (_answer("Oslo", 0.15),), ()), "qa", {DOC: TEXT}),
    )
    gold = GoldSet("hand", "jsonl", "qa", "hand.jsonl", None, items)
    run = EvalRun(gold, results, wall_s=2.0, mode="in-process", reader="heuristic", url=None, index=None,
                  concurrency=1, top_k=10)  # fmt: skip
    s = summarize(run)
    assert s["retrieval"]["n"] == 2  # the unanswerable JSONL item has no gold passage
    assert (s["retrieval"]["hit@1"], s["retrieval"]["hit@3"], s["retrieval"]["mrr@10"]) == (0.5, 1.0, 0.75)
    assert s["answers"]["has_ans_em"] == 0.5 and s["answers"]["n_answered"] == 1
    assert s["abstention"]["no_ans_accuracy"] == 0.0 and s["abstention"]["false_abstention_rate"] == 0.5
    assert s["abstention"]["overall_em"] == pytest.approx(1 / 3)
    citations = dict(s["citations"])
    assert math.isnan(citations.pop("passage_accuracy"))  # our JSONL records no gold passage: n/a
    assert citations == {
        "n_answers": 2, "contract_accuracy": 1.0, "n_right_answers": 1, "n_right_with_gold_passage": 0,
        "n_top_answers": 1, "document_accuracy": 1.0,
    }  # fmt: skip
    bins = s["calibration"]["bins"]
    assert bins[9]["count"] == 1 and bins[9]["accuracy"] == 1.0  # 0.95, right
    assert bins[1]["count"] == 1 and bins[1]["accuracy"] == 0.0  # 0.15, an answer to an unanswerable
    assert s["calibration"]["ece"] == pytest.approx((0.05 + 0.15) / 2)
    # Selective figures over every question: the declined one has no candidate (score 0, not right).
    assert s["selective"]["auroc"] == 1.0 and s["selective"]["coverage_at_90"] == pytest.approx(1 / 3)
    assert s["selective"]["coverage"] == pytest.approx(2 / 3) and s["selective"]["precision"] == 0.5
    assert s["calibration"]["auc"] == 1.0
    assert s["latency"]["p50_ms"] == 20.0 and s["latency"]["throughput_qps"] == 1.5


# Two paragraphs that both hold "1990": a right answer can cite either, only the second is the gold passage.
ARTICLE = "The club was founded in 1990 in Oslo.\n\nAnn Lee became its first chair in 1990."
GOLD_PARAGRAPH = GoldSpan("club", ARTICLE.index("Ann Lee"), len(ARTICLE))


def _squad_item(qid: str, answer: str) -> GoldItem:
    start = ARTICLE.index(answer, GOLD_PARAGRAPH.start)
    return GoldItem(
        id=qid,
        question=f"{qid}?",
        answerable=True,
        answers=(GoldAnswer(answer, "club", start, start + len(answer)),),
        spans=(GOLD_PARAGRAPH,),
        rule="overlaps",
        evidence=(GOLD_PARAGRAPH,),
    )


def _cite(text: str, score: float, *, after: int = 0, doc: str = "club") -> PredictedAnswer:
    start = ARTICLE.index(text, after)
    return PredictedAnswer(text, score, doc, start, start + len(text))


def test_citation_in_gold_passage_counts_right_answers_that_cite_another_paragraph_against_it(
    tmp_path: Path,
) -> None:
    texts = {"club": ARTICLE, "copy": ARTICLE}
    cases = {
        "gold paragraph": (_squad_item("a", "1990"), _cite("1990", 0.9, after=GOLD_PARAGRAPH.start)),
        "other paragraph": (_squad_item("b", "1990"), _cite("1990", 0.8)),  # right text, first paragraph
        "other document": (_squad_item("c", "1990"), _cite("1990", 0.7, after=GOLD_PARAGRAPH.start, doc="copy")),
        "wrong answer": (_squad_item("d", "Ann Lee"), _cite("Oslo", 0.6)),  # not right: not counted
    }
    results = {
        name: score_item(item, Observation(5.0, False, (answer,), ()), "qa", texts)
        for name, (item, answer) in cases.items()
    }
    assert {name: r.cites_gold_passage for name, r in results.items()} == {
        "gold paragraph": True, "other paragraph": False, "other document": False, "wrong answer": None,
    }  # fmt: skip
    assert all(r.citations_ok == (True,) for r in results.values())  # the contract holds for all of them
    # A citation that only overlaps the gold passage does not lie inside it.
    item = cases["gold paragraph"][0]
    assert item.cites_gold_passage("club", GOLD_PARAGRAPH.start - 5, GOLD_PARAGRAPH.start + 7) is False
    assert item.cites_gold_passage("club", GOLD_PARAGRAPH.start, GOLD_PARAGRAPH.end) is True

    gold = GoldSet("squad-like", "squad", "qa", "dev.json", "validation", tuple(i for i, _ in cases.values()))
    run = EvalRun(gold, tuple(results.values()), wall_s=1.0, mode="in-process", reader="heuristic", url=None,
                  index=None, concurrency=1, top_k=10)  # fmt: skip
    summary = write_run(run, tmp_path / "squad-like", "squad-like")
    c = summary["citations"]
    assert (c["n_right_answers"], c["n_right_with_gold_passage"]) == (3, 3)
    assert c["passage_accuracy"] == pytest.approx(1 / 3) and c["contract_accuracy"] == 1.0
    assert c["document_accuracy"] == 0.75  # the other-paragraph answer still cites the gold document
    rows = [json.loads(line) for line in (tmp_path / "squad-like" / "results.jsonl").read_text().splitlines()]
    assert [r["cites_gold_passage"] for r in rows] == [True, False, False, None]

    # The results table shows the figure, and n/a for a gold set without passages (our JSONL).
    hand = GoldSet("hand", "jsonl", "qa", "hand.jsonl", None, (_item("x", "Ann Lee"),))
    answered = score_item(hand.items[0], Observation(5.0, False, (_answer("Ann Lee", 0.9),)), "qa", {DOC: TEXT})
    assert answered.correct and answered.cites_gold_passage is None
    write_run(EvalRun(hand, (answered,), 1.0, "in-process", "heuristic", None, None, 1, 10), tmp_path / "hand")
    table = write_results_table(tmp_path).read_text()
    header = next(line for line in table.splitlines() if line.startswith("| run |"))
    column = header.split(" | ").index("cite passage")
    cells = {line.split(" | ")[0]: line.split(" | ")[column] for line in table.splitlines() if line.startswith("| [")}
    assert cells == {"| [hand](hand/summary.json)": "n/a", "| [squad-like](squad-like/summary.json)": "33.3"}


# ---------------------------------------------------------------------------------------------- BEIR over a mock


def test_beir_run_ranks_distinct_documents_and_retries_a_busy_service() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.params["q"])
        if len(calls) == 1:
            return httpx.Response(503, json={"error": {"code": "overloaded", "message": "busy"}})
        assert request.url.path == "/search" and request.url.params["k"] == "200"
        passages = [
            {"document_id": d, "document_offset": {"start": 0, "end": 5}} for d in ("c3", "c3", "c1", "c2", "c1")
        ]
        return httpx.Response(200, json={"query": "q", "passages": passages, "timings_ms": {"total": 1.5}})

    item = GoldItem(id="1", question="a claim", answerable=True, rule="relevance", relevance={"c1": 1, "c2": 2})
    gold = GoldSet("tiny", "beir", "retrieval", "tiny", "test", (item,))

    async def go():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://mock") as client:
            return await evaluate(gold, client, RunOptions(retries=2))

    (result,), wall_s, issues = asyncio.run(go())
    assert len(calls) == 2 and issues == [] and wall_s > 0
    assert result.error is None and result.ranked_documents == ("c3", "c1", "c2") and result.rank == 2
    assert result.recall100 == 1.0 and 0 < result.ndcg10 < 1
    s = summarize(EvalRun(gold, (result,), wall_s, "url", None, "http://mock", None, 1, 200))
    assert s["retrieval"]["ndcg@10"] == result.ndcg10 and s["retrieval"]["recall_curve"][0] == 0.0
    assert s["retrieval"]["recall_curve"][1] == 0.5 and s["retrieval"]["recall_curve"][2] == 1.0
    assert "answers" not in s and s["latency"]["server_timings_ms"] == {"total": 1.5}


# ---------------------------------------------------------------------------------------------- CLI


def test_eval_command_usage_and_unreachable_service(tmp_path: Path) -> None:
    from cli import app

    gold = tmp_path / "g.jsonl"
    gold.write_text(json.dumps({"id": "a", "question": "Q?"}) + "\n", encoding="utf-8")
    runner = CliRunner()
    both = runner.invoke(app, ["eval", str(gold), "--url", "http://127.0.0.1:1", "--in-process"])
    assert both.exit_code == 2
    assert runner.invoke(app, ["eval", str(tmp_path / "missing.jsonl"), "--in-process"]).exit_code == 2
    assert runner.invoke(app, ["eval", str(gold), "--corpus", "seeds"]).exit_code == 2  # no --index
    assert runner.invoke(app, ["eval", str(gold), "--reader", "magic"]).exit_code == 2
    url = f"http://127.0.0.1:{free_port()}"
    down = runner.invoke(app, ["eval", str(gold), "--url", url, "--ready-timeout", "1", "--out", str(tmp_path / "o")])
    assert down.exit_code == 5  # the service is not there (3 means an index problem, as elsewhere)
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------- end to end


@pytest.fixture()
def seed_engine(tmp_path: Path, seed_index_dir: Path, embedder, heuristic_pipeline):
    from rag.engine import Engine

    folder = tmp_path / "index"
    shutil.copytree(seed_index_dir, folder)
    engine = Engine(make_settings(folder, reader="heuristic"), embedder, heuristic_pipeline)
    engine.reload()
    assert engine.ready
    return engine


def test_end_to_end_in_process(tmp_path: Path, seed_engine, seed_text: str) -> None:
    (seed_file,) = sorted(SEED_DIR.glob("*.txt"))
    doc = slug_id(seed_file.stem)

    def answer(text: str) -> dict:
        start = seed_text.index(text)
        return {"text": text, "start": start, "end": start + len(text)}

    records = [
        {"id": "e1", "question": "How many troops are in US Forces Korea?", "document_id": doc,
         "answers": [answer("28,500")]},
        {"id": "e2", "question": "Who is the Japanese prime minister who spoke with Trump on the phone?",
         "document_id": doc, "answers": [answer("Shigeru Ishiba")]},
        {"id": "e3", "question": "Who is the current head coach of Manchester United?", "answerable": False},
        # Its gold document is not indexed: never a hit, and reported as a gold issue.
        {"id": "e4", "question": "How many troops are in US Forces Korea?", "document_id": "not-indexed",
         "answers": [{"text": "28,500", "start": 0, "end": 6}]},
    ]  # fmt: skip
    gold_path = tmp_path / "mini.jsonl"
    gold_path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    gold = load_jsonl_gold(gold_path)

    done: list[int] = []
    from service.main import create_app

    target = Target(mode="in-process", settings=seed_engine.settings, engine=seed_engine, app_factory=create_app)
    run = run_eval(gold, target, RunOptions(concurrency=2), on_result=lambda: done.append(1))
    assert len(done) == 4 and run.reader == "heuristic"
    out = tmp_path / "out"
    summary = write_run(run, out, "mini-heuristic")

    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "summary.json").read_text()) == summary
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["e1", "e2", "e3", "e4"]
    assert summary["n"] == 4 and summary["errors"] == 0 and summary["name"] == "mini-heuristic"
    assert summary["gold_issues"] == ["gold document 'not-indexed' is not in the index (wrong --index or --corpus?)"]

    by_id = {r["id"]: r for r in rows}
    assert by_id["e4"]["rank"] is None and by_id["e3"]["rank"] is None
    assert by_id["e1"]["rank"] is not None  # one document: some passage of the top 10 holds "28,500"
    ret = summary["retrieval"]
    assert ret["n"] == 3
    hits = [ret[f"hit@{k}"] for k in (1, 3, 5, 10)]
    assert hits == sorted(hits) and hits[-1] == pytest.approx(2 / 3)
    assert ret["recall_curve"][9] == ret["hit@10"] and len(ret["recall_curve"]) == 10
    assert ret["hit@1"] <= ret["mrr@10"] <= ret["hit@10"]

    # Every number in the summary agrees with the per-question rows, recomputed with the metric functions.
    for r in rows:
        if r["answerable"]:
            assert r["em"] == exact_match(r["prediction"], r["gold_answers"])
            assert r["f1"] == pytest.approx(f1(r["prediction"], r["gold_answers"]))
        else:
            assert r["em"] == r["f1"] == float(r["no_answer"])
        assert (r["prediction"] == "") == r["no_answer"] and (r["score"] is None) == r["no_answer"]
    answerable = [r for r in rows if r["answerable"]]
    assert summary["answers"]["has_ans_f1"] == pytest.approx(sum(r["f1"] for r in answerable) / 3)
    assert summary["abstention"]["overall_em"] == pytest.approx(sum(r["em"] for r in rows) / 4)
    assert summary["abstention"]["no_ans_accuracy"] == float(by_id["e3"]["no_answer"])
    # Offsets are the truth: every answer the service gave points at its text in the cited document.
    given = [ok for r in rows for ok in r["citations_ok"]]
    assert all(given) and summary["citations"]["n_answers"] == len(given)
    # Our JSONL records no gold passage, so whether right answers cite it is n/a, not 0 or 100.
    assert summary["citations"]["passage_accuracy"] is None and all(r["cites_gold_passage"] is None for r in rows)
    assert sum(b["count"] for b in summary["calibration"]["bins"]) == sum(r["score"] is not None for r in rows)
    lat = summary["latency"]
    assert 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"] and lat["throughput_qps"] > 0
    assert {"embed", "retrieve", "read", "total"} <= set(lat["server_timings_ms"])

    table = write_results_table(tmp_path)  # collects out/summary.json
    text = table.read_text()
    assert "| [out](out/summary.json) | mini | heuristic | 4 |" in text
    assert f"| {100 * ret['hit@1']:.1f} |" in text
