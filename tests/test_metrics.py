"""Metrics on hand-made cases (the official SQuAD normalisation included), and the gold-set loaders on tiny
inline files of each format."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rag.errors import LoadError, ValidationError
from rag.evaluation.datasets import GoldSet, load_beir_gold, load_gold, load_jsonl_gold, load_squad_gold
from rag.evaluation.metrics import (
    exact_match,
    f1,
    hit_at,
    ndcg_at,
    normalize_answer,
    percentile,
    recall_at,
    reciprocal_rank,
    roc_auc,
)
from rag.squad import article_text

# ---------------------------------------------------------------------------------------------- answers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Cat", "cat"),
        ("an apple, a day!", "apple day"),
        ("  many\t spaces\n here ", "many spaces here"),
        ("theory of another", "theory of another"),  # articles only as whole words
        ("A", ""),
        ("U.S.A.", "usa"),
        ("$10,000", "10000"),
        ("rock-'n'-roll", "rocknroll"),
        # The official script strips ASCII punctuation only: typographic quotes and dashes stay.
        ("“Quoted” — text", "“quoted” — text"),
        ("l’Europe", "l’europe"),
        ("ÉCOLE", "école"),
        ("", ""),
    ],
)
def test_normalize_answer_follows_the_official_script(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_exact_match_ignores_case_punctuation_and_articles_and_takes_the_best_gold() -> None:
    assert exact_match("the Eiffel Tower.", ["Eiffel tower"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel tower"]) == 0.0
    assert exact_match("Paris", ["London", "paris"]) == 1.0


def test_no_gold_means_no_answer_and_only_an_empty_prediction_matches() -> None:
    assert exact_match("", []) == 1.0
    assert f1("", []) == 1.0
    assert exact_match("Paris", []) == 0.0
    assert f1("Paris", []) == 0.0
    # As in the official script, a prediction that normalises to nothing is an empty prediction.
    assert exact_match("the", []) == 1.0
    assert exact_match("", ["Paris"]) == 0.0
    assert f1("", ["Paris"]) == 0.0


def test_f1_counts_token_overlap_with_multiplicity() -> None:
    # pred tokens [cat, sat], gold [cat, sat, on, mat]: precision 1, recall 1/2.
    assert f1("the cat sat", ["a cat sat on the mat"]) == pytest.approx(2 / 3)
    # pred [cat, cat] vs gold [cat]: one common token, precision 1/2, recall 1.
    assert f1("cat cat", ["cat"]) == pytest.approx(2 / 3)
    assert f1("dog", ["cat"]) == 0.0
    assert f1("cat sat", ["dog", "sat cat"]) == 1.0  # the best gold counts


# ---------------------------------------------------------------------------------------------- retrieval


def test_hit_and_reciprocal_rank() -> None:
    assert hit_at(1, 1) == 1.0
    assert hit_at(3, 1) == 0.0
    assert hit_at(3, 5) == 1.0
    assert hit_at(None, 10) == 0.0
    assert reciprocal_rank(4) == 0.25
    assert reciprocal_rank(11, 10) == 0.0
    assert reciprocal_rank(None) == 0.0


RELEVANCE = {"d2": 2, "d3": 1, "d4": 1, "d5": 0}


def test_ndcg_by_hand() -> None:
    ranked = ["d1", "d2", "d3"]
    dcg = 0 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at(ranked, RELEVANCE, 3) == pytest.approx(dcg / idcg)
    assert ndcg_at(["d2", "d3", "d4"], RELEVANCE, 3) == pytest.approx(1.0)
    assert ndcg_at(["d2"], RELEVANCE, 1) == pytest.approx(1.0)
    assert ndcg_at(["d5", "d1"], RELEVANCE, 10) == 0.0
    assert ndcg_at(["d1"], {}, 10) == 0.0


def test_recall_by_hand() -> None:
    ranked = ["d1", "d2", "d5", "d3"]
    assert recall_at(ranked, RELEVANCE, 2) == pytest.approx(1 / 3)
    assert recall_at(ranked, RELEVANCE, 4) == pytest.approx(2 / 3)  # d5 has relevance 0: not relevant
    assert recall_at(ranked, {"d1": 0}, 4) == 0.0


def test_percentile_interpolates_linearly() -> None:
    values = [40, 10, 30, 20, 50]  # unsorted on purpose
    assert percentile(values, 0) == 10
    assert percentile(values, 50) == 30
    assert percentile(values, 100) == 50
    assert percentile(values, 90) == pytest.approx(46)  # position 3.6 between 40 and 50
    assert percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert percentile([7], 99) == 7
    assert math.isnan(percentile([], 50))


def test_roc_auc_with_ties() -> None:
    assert roc_auc([0.1, 0.9], [False, True]) == 1.0
    assert roc_auc([0.9, 0.1], [False, True]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5], [True, False, True]) == 0.5
    # Pairs (positive, negative): (0.4, 0.1)=1, (0.4, 0.4)=1/2, (0.8, 0.1)=1, (0.8, 0.4)=1 -> 3.5 / 4.
    assert roc_auc([0.1, 0.4, 0.4, 0.8], [False, True, False, True]) == pytest.approx(0.875)
    assert math.isnan(roc_auc([0.3, 0.4], [True, True]))


# ---------------------------------------------------------------------------------------------- our JSONL


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def test_jsonl_gold(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "mini.jsonl",
        [
            {"id": "q1", "question": "Who?", "answerable": True, "type": "person", "document_id": "doc-a",
             "answers": [{"text": "Ann Lee", "start": 10, "end": 17}, {"text": "Lee", "start": 14, "end": 17}]},
            {"id": "q2", "question": "Nobody knows?", "answerable": False, "document_id": "doc-a", "answers": []},
            {"id": "q3", "question": "Where?",
             "answers": [{"text": "Oslo", "start": 0, "end": 4, "document_id": "doc-b"}]},
        ],
    )  # fmt: skip
    gold = load_jsonl_gold(path)
    assert (gold.name, gold.format, gold.kind) == ("mini", "jsonl", "qa")
    q1, q2, q3 = gold.items
    assert q1.answer_texts == ("Ann Lee", "Lee") and q1.type == "person" and q1.document_id == "doc-a"
    assert [(s.start, s.end) for s in q1.spans] == [(10, 17), (14, 17)]
    # "contains": a passage counts when it holds a whole gold answer span.
    assert q1.passage_counts("doc-a", 0, 17)
    assert q1.passage_counts("doc-a", 12, 40)  # holds "Lee"
    assert not q1.passage_counts("doc-a", 15, 40)
    assert not q1.passage_counts("doc-b", 0, 100)
    assert not q2.answerable and not q2.has_gold_passage and q2.answers == ()
    assert q3.answerable and q3.answers[0].document_id == "doc-b"
    # Answer offsets are not a passage: our JSONL records none, so a citation cannot be checked against one.
    assert q1.evidence == () and q1.cites_gold_passage("doc-a", 10, 17) is None


def _answer(text: str, start: int, end: int) -> dict:
    return {"text": text, "start": start, "end": end}


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"id": "x", "question": "Q?", "document_id": "d", "answers": [_answer("abc", 0, 4)]}, "3 characters"),
        ({"id": "x", "question": "Q?", "answerable": True, "answers": []}, "answerable but has no answers"),
        (
            {"id": "x", "question": "Q?", "answerable": False, "document_id": "d", "answers": [_answer("a", 0, 1)]},
            "not answerable",
        ),
        ({"id": "x", "question": "Q?", "answers": [_answer("a", 0, 1)]}, "document_id"),
        ({"id": "x", "question": "  "}, "'question'"),
        ({"id": "x", "question": "Q?", "document_id": "d", "answers": [_answer("a", -1, 0)]}, "'start'"),
    ],
)
def test_jsonl_gold_errors_name_the_line_and_the_value(tmp_path: Path, record: dict, message: str) -> None:
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"id": "ok", "question": "Fine?", "answerable": False}, record])
    with pytest.raises(LoadError, match=r"bad\.jsonl line 2") as info:
        load_jsonl_gold(path)
    assert message in str(info.value)


def test_jsonl_gold_rejects_duplicate_ids_and_a_split(tmp_path: Path) -> None:
    dup = _write_jsonl(tmp_path / "dup.jsonl", [{"id": "a", "question": "Q?"}, {"id": "a", "question": "R?"}])
    with pytest.raises(LoadError, match="duplicate question id 'a'"):
        load_jsonl_gold(dup)
    ok = _write_jsonl(tmp_path / "ok.jsonl", [{"id": "a", "question": "Q?"}])
    with pytest.raises(ValidationError, match="--split"):
        load_gold(ok, "validation")


# ---------------------------------------------------------------------------------------------- SQuAD


def _squad_payload() -> dict:
    return {
        "version": "v2.0",
        "data": [
            {
                "title": "New Town",
                "paragraphs": [
                    {"context": "Intro paragraph.", "qas": []},
                    {
                        "context": "The river runs through New Town since 1200.",
                        "qas": [
                            {"id": "t1", "question": "Since when?", "is_impossible": False,
                             "answers": [{"text": "1200", "answer_start": 38}, {"text": "1200", "answer_start": 38}]},
                        ],
                    },
                ],
            },
            {
                "title": "Warsaw",  # a validation article
                "paragraphs": [
                    {"context": "Warsaw is the capital of Poland.", "qas": [
                        {"id": "v1", "question": "Capital of what?", "is_impossible": False,
                         "answers": [{"text": "Poland", "answer_start": 25}]},
                        {"id": "v2", "question": "Capital of Mars?", "is_impossible": True, "answers": [],
                         "plausible_answers": [{"text": "Poland", "answer_start": 25}]},
                    ]},
                ],
            },
        ],
    }  # fmt: skip


def test_squad_gold_offsets_point_into_the_article_document(tmp_path: Path) -> None:
    payload = _squad_payload()
    path = tmp_path / "mini-squad.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    gold = load_squad_gold(path, "all")
    assert gold.name == "mini-squad-all" and gold.kind == "qa"
    t1 = next(i for i in gold.items if i.id == "t1")
    text, starts = article_text(payload["data"][0])
    (answer,) = t1.answers  # duplicate answers collapse
    assert answer.document_id == "New_Town"  # slug_id of the title, as squad_documents names it
    assert answer.start == starts[1] + 38 and text[answer.start : answer.end] == "1200"
    (paragraph,) = t1.spans
    assert text[paragraph.start : paragraph.end] == payload["data"][0]["paragraphs"][1]["context"]
    # "overlaps": any passage sharing a character with the gold paragraph counts.
    assert t1.rule == "overlaps"
    assert t1.passage_counts("New_Town", 0, paragraph.start + 1)
    assert not t1.passage_counts("New_Town", 0, paragraph.start)  # ends right where it starts
    assert not t1.passage_counts("Warsaw", 0, 10_000)
    # The paragraph is also the gold passage a citation must lie inside (not merely overlap).
    assert t1.evidence == (paragraph,)
    assert t1.cites_gold_passage("New_Town", answer.start, answer.end) is True
    assert t1.cites_gold_passage("New_Town", paragraph.start, paragraph.end) is True
    assert t1.cites_gold_passage("New_Town", 0, paragraph.start + 3) is False  # starts in the intro paragraph
    assert t1.cites_gold_passage("Warsaw", answer.start, answer.end) is False


def test_squad_gold_split_and_unanswerable_questions(tmp_path: Path) -> None:
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(_squad_payload()), encoding="utf-8")
    validation = load_gold(path)  # SQuAD defaults to the validation split
    assert validation.split == "validation" and [i.id for i in validation.items] == ["v1", "v2"]
    v2 = validation.items[1]
    assert not v2.answerable and v2.answers == ()
    assert v2.has_gold_passage and v2.spans[0].document_id == "Warsaw"  # kept for retrieval stats
    assert [i.id for i in load_squad_gold(path, "train").items] == ["t1"]
    with pytest.raises(ValidationError, match="'dev'"):
        load_squad_gold(path, "dev")
    not_squad = tmp_path / "other.json"
    not_squad.write_text(json.dumps({"documents": []}), encoding="utf-8")
    with pytest.raises(LoadError, match="not SQuAD"):
        load_gold(not_squad)


# ---------------------------------------------------------------------------------------------- BEIR


def _beir_folder(root: Path) -> Path:
    folder = root / "tinybeir"
    (folder / "qrels").mkdir(parents=True)
    _write_jsonl(folder / "corpus.jsonl", [{"_id": "c1", "title": "T", "text": "x"}])
    _write_jsonl(
        folder / "queries.jsonl",
        [{"_id": "1", "text": "first claim"}, {"_id": "2", "text": "second claim"}, {"_id": "3", "text": "third"}],
    )
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n1\tc1\t1\n1\tc7\t2\n2\tc9\t0\n", encoding="utf-8"
    )
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n3\tc2\t1\n", encoding="utf-8")
    return folder


def test_beir_gold_has_graded_relevance_and_skips_queries_without_relevant_documents(tmp_path: Path) -> None:
    folder = _beir_folder(tmp_path)
    gold = load_gold(folder)  # a folder is BEIR; test is the default split
    assert (gold.name, gold.format, gold.kind, gold.split) == ("tinybeir-test", "beir", "retrieval", "test")
    (item,) = gold.items  # query 2 has only a relevance-0 document
    assert item.id == "1" and item.question == "first claim"
    assert dict(item.relevance) == {"c1": 1, "c7": 2}
    assert item.passage_counts("c7", 0, 5) and not item.passage_counts("c9", 0, 5)
    assert [i.id for i in load_beir_gold(folder, "train").items] == ["3"]
    with pytest.raises(ValidationError, match="splits there: test, train"):
        load_beir_gold(folder, "dev")


def test_sample_is_fixed_and_keeps_file_order(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "many.jsonl", [{"id": f"q{i:02d}", "question": f"Q{i}?"} for i in range(30)])
    gold = load_jsonl_gold(path)
    first, second = gold.sample(7), gold.sample(7)
    assert isinstance(first, GoldSet) and len(first.items) == 7
    assert [i.id for i in first.items] == [i.id for i in second.items] == sorted(i.id for i in first.items)
    assert gold.sample(None) is gold and gold.sample(100) is gold
