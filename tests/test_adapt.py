"""Adapting the reader from users' annotated questions (rag/offline/adapt*.py, rag train-reader --extra-gold)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from rag.decide import FEATURES
from rag.errors import ValidationError
from rag.offline import adapt, adapt_data, adapt_scoring
from rag.offline.adapt_data import UserQuestion, split, user_groups
from rag.offline.adapt_scoring import Scored, figures, paired_difference, score
from rag.offline.examples import GroupExample
from rag.offline.fit_calibration import QuestionRows
from rag.types import Chunk, Hit

TEXT = "Alpha founded the club in 1901.\n\nThe club moved to Paris in 1920. It has 300 members.\n\nBeta plays."


def questions(n: int, docs: int) -> list[UserQuestion]:
    out = []
    for i in range(n):
        if i % 5 == 4:
            out.append(UserQuestion(f"q{i}", f"question {i}?", None, ()))  # not in the articles
        else:
            out.append(UserQuestion(f"q{i}", f"question {i}?", f"doc{i % docs}", ((0, 5, "Alpha"),)))
    return out


def test_split_keeps_each_document_on_one_side_and_in_one_fold():
    qs = questions(100, docs=30)
    train, folds, by = split(qs, 0.3, 4, seed=13)
    assert by == "document"
    held = [q for f in folds for q in f]
    assert len(train) + len(held) == 100 and 25 <= len(held) <= 40
    train_docs = {q.document_id for q in train if q.document_id}
    for f in folds:
        assert not {q.document_id for q in f if q.document_id} & train_docs
    fold_docs = [{q.document_id for q in f if q.document_id} for f in folds]
    assert all(not (a & b) for i, a in enumerate(fold_docs) for b in fold_docs[i + 1 :])
    assert split(qs, 0.3, 4, seed=13) == (train, folds, by)  # drawn from the seed: a resumed run splits the same


def test_split_by_question_when_there_are_few_documents_and_refuses_too_few_questions():
    train, folds, by = split(questions(40, docs=2), 0.3, 4, seed=1)
    assert by == "question" and train and len(folds) == 4
    with pytest.raises(ValidationError, match="at least 20"):
        split(questions(10, docs=5), 0.3, 4, seed=1)


def test_user_questions_read_the_feedback_export(tmp_path: Path):
    gold = tmp_path / "gold.jsonl"
    rows = [
        {
            "id": "feedback-00001",
            "question": "Where did the club move?",
            "answerable": True,
            "document_id": "club",
            "answers": [{"text": "Paris", "document_id": "club", "start": 51, "end": 56}],
        },
        {"id": "feedback-00002", "question": "Who is the mayor?", "answerable": False, "answers": []},
    ]
    gold.write_text("".join(json.dumps(r) + "\n" for r in rows))
    a, b = adapt_data.user_questions(gold)
    assert a.answers == ((51, 56, "Paris"),) and a.document_id == "club" and a.answerable
    assert not b.answerable and b.document_id is None and b.unit == "q:feedback-00002"


def test_user_groups_are_read_like_the_service_reads_them():
    cuts = [(0, 31), (33, 84), (86, len(TEXT))]
    chunks = [Chunk(i, "club", i, a, b, TEXT[a:b]) for i, (a, b) in enumerate(cuts)]

    class Index:
        def chunks_of(self, doc_id):
            return chunks if doc_id == "club" else []

    hits = [Hit(chunks[2], 1.0), Hit(chunks[0], 0.9), Hit(chunks[1], 0.8)]
    start = TEXT.index("Paris")
    qs = [
        UserQuestion("a", "Where did the club move?", "club", ((start, start + 5, "Paris"),)),
        UserQuestion("b", "Who is the mayor?", None, ()),
    ]
    a, b = user_groups(qs, Index(), lambda q, k: hits[:k], negatives=1, seed=13, log=lambda m: None)
    assert a.passages[0] == chunks[1].text and a.passages[0][slice(*a.answers[0])] == "Paris"
    assert len(a.passages) == 2 and "Paris" not in a.passages[1]
    assert b.answers == () and b.passages == (chunks[2].text, chunks[0].text)  # its top retrieved chunks


def rows(golds: tuple[str, ...], texts: list[str], article: str = "user-fold-0") -> QuestionRows:
    return QuestionRows([(1.0,)] * len(texts), texts, [0] * len(texts), golds, "answerable", article)


def test_a_decline_scores_one_on_a_question_without_answer_and_zero_on_one_with():
    with_answer = rows(("Paris",), ["Paris", "Rome"])
    without = rows((), ["Paris"])
    assert score(with_answer, 0, 0.9, 0.5) == Scored(True, 1.0, 1.0, True)
    assert score(with_answer, 1, 0.9, 0.5) == Scored(True, 0.0, 0.0, False)
    assert score(with_answer, 0, 0.4, 0.5) == Scored(False, 0.0, 0.0, False)
    assert score(without, 0, 0.4, 0.5) == Scored(False, 1.0, 1.0, False)
    assert score(without, 0, 0.9, 0.5) == Scored(True, 0.0, 0.0, False)
    f = figures([score(with_answer, 0, 0.9, 0.5), score(with_answer, 1, 0.9, 0.5), score(without, 0, 0.4, 0.5)])
    assert f["f1"] == pytest.approx(200 / 3, abs=0.01) and f["answered"] == pytest.approx(66.7)
    assert f["right_among_given"] == 50.0 and f["f1_interval"][0] <= f["f1"] <= f["f1_interval"][1]


def test_paired_difference_is_zero_for_the_same_answers_and_signed_otherwise():
    good, bad = Scored(True, 1.0, 1.0, True), Scored(True, 0.0, 0.0, False)
    same = paired_difference([good, bad] * 10, [good, bad] * 10)
    assert same["f1"] == {"difference": 0.0, "low": 0.0, "high": 0.0}
    better = paired_difference([bad] * 20, [good] * 15 + [bad] * 5)
    assert better["f1"]["difference"] == 75.0 and better["f1"]["low"] > 0


def test_each_held_out_fold_is_scored_by_a_calibration_fitted_without_it(monkeypatch):
    fitted_on: list[set[str]] = []
    real_fit = adapt_scoring.fit_on

    def spy(data):
        fitted_on.append({q.article for q in data})
        return real_fit(data)

    monkeypatch.setattr(adapt_scoring, "fit_on", spy)
    rng = random.Random(0)

    def question(article: str, kind: str = "answerable") -> QuestionRows:
        good = kind == "answerable" and rng.random() < 0.6
        row = tuple(rng.gauss(1 if good else 0, 1) for _ in FEATURES)
        return QuestionRows([row], ["Paris" if good else "Rome"], [int(good)], ("Paris",), kind, article)

    benchmark = [question("bench") for _ in range(50)] + [question("bench", "not_covered") for _ in range(10)]
    user = [question(f"user-fold-{i % 3}") for i in range(30)]
    scored = adapt_scoring.cross_fit_user(benchmark, user)
    assert len(scored) == 30
    assert fitted_on == [
        {"bench", "user-fold-1", "user-fold-2"},
        {"bench", "user-fold-0", "user-fold-2"},
        {"bench", "user-fold-0", "user-fold-1"},
    ]


def test_install_copies_the_calibration_last_so_a_crash_leaves_no_mismatched_pair(tmp_path: Path, monkeypatch):
    candidate, current = tmp_path / "candidate", tmp_path / "current"
    for folder, tag in ((candidate, "new"), (current, "old")):
        folder.mkdir()
        for name in adapt.READER_FILES:
            (folder / name).write_text(f"{tag} {name}")
    adapt.install_reader(candidate, current)
    assert all((current / n).read_text() == f"new {n}" for n in adapt.READER_FILES)

    for name in adapt.READER_FILES:
        (current / name).write_text(f"old {name}")
    real_copy = adapt.shutil.copyfile
    copied: list[str] = []

    def failing_copy(src, dst):
        if len(copied) == 2:
            raise OSError("disk full")
        copied.append(Path(src).name)
        return real_copy(src, dst)

    monkeypatch.setattr(adapt.shutil, "copyfile", failing_copy)
    with pytest.raises(OSError):
        adapt.install_reader(candidate, current)
    assert not (current / "calibration-trained.json").exists()  # the old weights' calibration is gone first


def test_fit_groups_continues_a_reader_and_records_what_it_trained_on(tmp_path: Path):
    from rag.offline.train_groups import GroupTrainConfig, fit_groups
    from rag.reader.model import DEFAULT_READER_DIR

    pytest.importorskip("torch")
    groups = [
        GroupExample("a", "Where did the club move?", "club", (TEXT[33:84], TEXT[0:31]), ((18, 23),), "feedback"),
        GroupExample("b", "Who is the mayor?", "", (TEXT[0:31],), (), "feedback-not-in-articles"),
    ]
    config = GroupTrainConfig(
        squad_path="unused",
        out_dir=str(tmp_path / "out"),
        work_dir=str(tmp_path / "work"),
        init_from=str(DEFAULT_READER_DIR),
        epochs=1.0,
        questions_per_batch=2,
        seed=3,
        threads=1,
    )
    record = fit_groups(groups, config, random.Random(3), data={"gold_sha256": "x"}, log=lambda m: None)
    assert record["data"]["questions_by_source"] == {"feedback": 1, "feedback-not-in-articles": 1}
    assert record["data"]["gold_sha256"] == "x" and record["training"]["steps"] == 1
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / "onnx-reference.json").is_file()


def test_cli_refuses_too_few_annotated_questions(tmp_path: Path):
    from typer.testing import CliRunner

    from cli import app

    pytest.importorskip("torch")
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "1", "question": "Who?", "answerable": False, "answers": []}) + "\n")
    result = CliRunner().invoke(app, ["train-reader", "--extra-gold", str(gold), "--work", str(tmp_path / "w")])
    assert result.exit_code == 2, result.output
    assert "at least 20" in result.output
