"""The trust benchmark and the selective-QA figures (rag/evaluation/trust.py, rag/evaluation/metrics.py),
and the near-miss training groups (rag/offline/examples.py)."""

from __future__ import annotations

import math
import random

import pytest

from rag.evaluation.metrics import risk_coverage_curve, roc_auc, selective_figures, weighted_auc
from rag.evaluation.trust import (
    Decided,
    build_corpora,
    given_precision,
    kind_figures,
    mix_weights,
    near_miss_round,
    operating_threshold,
    stated_anywhere,
)
from rag.offline.examples import GroupExample, near_miss, qa_more_sources
from rag.sentences import remove_answer_sentences
from rag.squad import GoldAnswer
from rag.types import Document


def test_selective_figures_by_hand() -> None:
    # Scores 0.9 (right), 0.8 (wrong), 0.7 (right), 0.1 (wrong): cuts after 1, 2, 3, 4 questions.
    scores, right = [0.9, 0.8, 0.7, 0.1], [True, False, True, False]
    curve = risk_coverage_curve(scores, right)
    assert [(c, round(r, 4)) for c, r, _ in curve] == [(0.25, 0.0), (0.5, 0.5), (0.75, round(1 / 3, 4)), (1.0, 0.5)]
    figures = selective_figures(scores, right)
    assert figures["coverage_at_90"] == 0.25  # only the first cut is >= 90% right
    assert figures["coverage_at_80"] == 0.25
    assert figures["aurc"] == pytest.approx(0.25 * (0 + 0.5 + 1 / 3 + 0.5))
    assert figures["auroc"] == pytest.approx(0.75)  # right 0.9 beats both wrongs, right 0.7 beats one of two


def test_ties_are_answered_together_and_weights_count() -> None:
    curve = risk_coverage_curve([0.5, 0.5, 0.2], [True, False, True])
    assert [c for c, _, _ in curve] == [pytest.approx(2 / 3), 1.0]
    # A weight of 3 on the wrong answer: the first cut is 3/4 wrong.
    weighted = risk_coverage_curve([0.9, 0.8], [True, False], [1.0, 3.0])
    assert weighted[1][1] == pytest.approx(0.75)


def test_weighted_auc_equals_the_plain_one_with_unit_weights() -> None:
    rng = random.Random(3)
    scores = [round(rng.random(), 2) for _ in range(200)]  # rounding makes ties
    labels = [rng.random() < s for s in scores]
    assert weighted_auc(scores, labels, [1.0] * 200) == pytest.approx(roc_auc(scores, labels))
    assert math.isnan(weighted_auc([0.1, 0.2], [True, True], [1.0, 1.0]))


def test_remove_answer_sentences_keeps_the_rest_of_the_passage() -> None:
    text = "The club was founded in 1901. It moved to Paris in 1920. It has 300 members."
    start = text.index("Paris")
    assert remove_answer_sentences(text, [(start, start + 5)]) == "The club was founded in 1901. It has 300 members."


ARTICLE = {
    "title": "Club",
    "paragraphs": [
        {
            "context": "The club was founded in 1901 by Alpha. It moved to Paris in 1920. It has 300 members.",
            "qas": [
                {"id": "u", "question": "Who closed it?", "answers": [], "is_impossible": True},
                {"id": "a", "question": "Where did it move?", "answers": [{"text": "Paris", "answer_start": 51}]},
                {"id": "b", "question": "Who founded it?", "answers": [{"text": "Alpha", "answer_start": 32}]},
            ],
        }
    ],
}


def test_a_near_miss_round_removes_the_answer_sentence_of_one_question_per_paragraph() -> None:
    changed, chosen = near_miss_round([ARTICLE], 0)
    assert [q.question for q in chosen] == ["Where did it move?"]  # round 0: the first answerable question
    assert "Paris" not in changed[0]["paragraphs"][0]["context"]
    assert "founded in 1901 by Alpha" in changed[0]["paragraphs"][0]["context"]  # the topic is still there
    assert chosen[0].is_impossible
    _, second = near_miss_round([ARTICLE], 1)
    assert [q.question for q in second] == ["Who founded it?"]


def test_a_near_miss_is_dropped_when_its_answer_is_stated_elsewhere_in_the_corpus() -> None:
    other = {
        "title": "Other",
        "paragraphs": [{"context": "Paris is a city on the Seine.", "qas": []}],
    }
    seed = Document(id="seed", title="Seed", text="Nothing about clubs.")
    questions = []
    corpora = build_corpora([ARTICLE, other], {"Club"}, [seed], questions, not_covered_sample=0, rounds=2)
    near = {c.name: [q.question for q in c.questions] for c in corpora if c.name.startswith("near-miss")}
    assert near == {"near-miss-1": [], "near-miss-2": ["Who founded it?"]}  # "Paris" is in the other article
    assert stated_anywhere((GoldAnswer("the Seine", -1),), [Document(id="d", title="D", text="On the seine.")])
    assert not stated_anywhere((GoldAnswer("Sein", -1),), [Document(id="d", title="D", text="On the seine.")])


def decided(kind: str, score: float, right: bool = False) -> Decided:
    return Decided(kind, "A", score, right, float(right))


def test_the_operating_rule_is_the_lowest_threshold_with_80_percent_right_on_the_mix() -> None:
    # Answerable: right at 0.9, 0.8 and 0.6, wrong at 0.3. A near miss answered at 0.5, a not-covered one at 0.2.
    rows = [
        decided("answerable", 0.9, True),
        decided("answerable", 0.8, True),
        decided("answerable", 0.6, True),
        decided("answerable", 0.3),
        decided("near_miss", 0.5),
        decided("not_covered", 0.2),
    ]
    weights = mix_weights([d.kind for d in rows])
    assert sum(weights) == pytest.approx(1.0)
    # The kinds present share the mix in its proportions: answerable 2/3 : near miss 1/9 : not covered 1/9.
    assert weights[0] == pytest.approx((2 / 3) / (8 / 9) / 4)
    assert weights[4] == pytest.approx((1 / 9) / (8 / 9))
    assert given_precision(rows, 0.55) == pytest.approx(1.0)
    assert given_precision(rows, 0.5) == pytest.approx(0.5625 / 0.6875)  # the near miss joins: 81.8%
    assert given_precision(rows, 0.3) == pytest.approx(0.5625 / 0.875)  # the wrong answer joins: 64.3%
    assert operating_threshold(rows) == pytest.approx(0.305)  # the lowest grid point above 0.3
    figures = kind_figures(rows, 0.55)
    assert figures["answerable"]["declined"] == pytest.approx(0.25)
    assert figures["answerable"]["f1"] == pytest.approx(75.0)
    assert figures["near_miss"]["declined"] == 1.0 and figures["not_covered"]["declined"] == 1.0


def test_near_miss_training_groups_lose_the_answer_sentence_and_its_label() -> None:
    passage = (
        "The club was founded in 1901 by Alpha, a teacher from Lyon. It moved to Paris in 1920. It has 300 members."
    )
    start = passage.index("Paris")
    group = GroupExample("q1", "Where did it move?", "Club", (passage, "Other text."), ((start, start + 5),), "x")
    miss = near_miss(group, min_chars=20)
    assert miss is not None and miss.answers == () and "Paris" not in miss.passages[0]
    assert miss.passages[1] == "Other text." and miss.source == "near-miss"
    assert near_miss(group, min_chars=500) is None  # too little left
    repeated = GroupExample("q2", "Where?", "Club", ("Paris is big. It moved to Paris.", ""), ((26, 31),), "x")
    assert near_miss(repeated, min_chars=5) is None  # the answer is still stated in the passage


def test_qa_more_never_includes_the_reserved_reddit_file(tmp_path) -> None:
    import json

    one = {"data": [{"title": "T", "paragraphs": [{"context": "c", "qas": []}]}]}
    for name in (
        "squadshifts-new-wiki.json",
        "squadshifts-amazon-reviews.json",
        "tydiqa-goldp-english-train.json",
        "tydiqa-goldp-english-dev.json",
        "squadshifts-reddit.json",
    ):
        (tmp_path / name).write_text(json.dumps(one))
    sources = qa_more_sources(tmp_path)
    assert [name for name, _ in sources] == ["squadshifts-new-wiki", "squadshifts-amazon", "tydiqa-train", "tydiqa-dev"]
    titles = [a["title"] for _, payload in sources for a in payload["data"]]
    assert len(set(titles)) == 4  # the same title in several files becomes four distinct documents


def test_a_calibration_fitted_for_another_read_k_is_refused(tmp_path) -> None:
    from pathlib import Path

    from rag.errors import ModelError
    from rag.reader_calibration import check_calibration_fits, default_calibrator

    calibrator = default_calibrator("trained")
    calibrator.fitted_on = {"read_k": 3, "reader_backend": "onnx-int8"}
    check_calibration_fits(calibrator, Path("cal.json"), "trained", 3, "onnx-int8")  # fits
    with pytest.raises(ModelError, match="RAG_READ_K=5 rag fit-calibration"):
        check_calibration_fits(calibrator, Path("cal.json"), "trained", 5, "onnx-int8")
    check_calibration_fits(calibrator, Path("cal.json"), "trained", 3, "onnx")  # another runtime: a warning only


def test_cached_reader_outputs_read_back_whole(tmp_path) -> None:
    from rag.offline.fit_calibration import QuestionRows, _cached

    rows = [
        QuestionRows(
            [(0.5, 1.0)], ["Paris"], [1], ("Paris",), "answerable", "Club", "Where?", [("It moved to Paris.", 12, 17)]
        )
    ]
    _cached(tmp_path, "rows.json", lambda: rows, lambda m: None)
    again = _cached(tmp_path, "rows.json", lambda: [], lambda m: None)
    assert again == rows
