"""Serving-like training groups and the shared-normalisation loss (rag/offline/examples.py, train_groups.py)."""

from __future__ import annotations

import random
from dataclasses import asdict

import numpy as np
import pytest

from rag.offline.examples import GroupExample, SourceQuestion, articles_from, build_groups, gold_chunk
from rag.offline.train_groups import GroupTrainConfig, group_loss, label_groups, schedule, select_groups, trained_by
from rag.reader.model import base_model_path
from rag.types import Chunk, Hit

TEXT = "Alpha founded the club in 1901.\n\nThe club moved to Paris in 1920. It has 300 members.\n\nBeta plays."


def chunks_of(text: str) -> list[Chunk]:
    cuts = [(0, 31), (33, 84), (86, len(text))]
    return [Chunk(i, "club", i, a, b, text[a:b]) for i, (a, b) in enumerate(cuts)]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_model_path())


def test_articles_from_keeps_answer_offsets_into_the_article_text():
    payload = {
        "data": [
            {
                "title": "Club",
                "paragraphs": [
                    {"context": "Alpha founded the club in 1901.", "qas": []},
                    {
                        "context": "The club moved to Paris in 1920.",
                        "qas": [
                            {"id": "a", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 18}]},
                            {"id": "b", "question": "Who?", "answers": [], "is_impossible": True},
                            {
                                "id": "c",
                                "question": "?",
                                "answers": [{"text": "club", "answer_start": 4, "answer_start_ambiguous": True}],
                            },
                        ],
                    },
                ],
            }
        ]
    }
    _, questions = articles_from(payload, "test")
    text = "Alpha founded the club in 1901.\n\nThe club moved to Paris in 1920."
    by_id = {q.id: q for q in questions}
    assert set(by_id) == {"a", "b"}  # the only answer of "c" has an unknown position: left out
    start, end, answer = by_id["a"].answers[0]
    assert text[start:end] == answer == "Paris"
    assert by_id["b"].answers == () and text[slice(*by_id["b"].paragraph)] == "The club moved to Paris in 1920."


def test_groups_hold_the_gold_chunk_first_and_retrieved_negatives_without_the_answer():
    chunks = chunks_of(TEXT)

    class Index:
        def chunks_of(self, doc_id):
            return chunks

    start = TEXT.index("Paris")
    q = SourceQuestion("q", "Where did the club move?", "club", (33, 84), ((start, start + 5, "Paris"),), "t")
    # Retrieval returns the gold chunk, then a chunk that also says "Paris" (not a negative), then a true one.
    paris_too = Chunk(9, "other", 0, 0, 20, "Paris is in France.")
    hits = [Hit(chunks[1], 1.0), Hit(paris_too, 0.9), Hit(chunks[0], 0.8), Hit(chunks[2], 0.7)]
    (group,) = build_groups([q], Index(), lambda question, k: hits, negatives=1, log=lambda m: None)
    assert group.passages == (chunks[1].text, chunks[0].text)
    (a, b) = group.answers[0]
    assert group.passages[0][a:b] == "Paris"
    unanswerable = SourceQuestion("u", "Who?", "club", (33, 84), (), "t")
    assert gold_chunk(chunks, unanswerable, random.Random(0)) == chunks[1]


def test_shared_normalisation_compares_spans_across_passages(tokenizer):
    import torch

    group = GroupExample(
        "q", "Where did the club move?", "club", ("The club moved to Paris in 1920.", "Beta plays."), ((18, 23),), "t"
    )
    (item,) = label_groups(tokenizer, [group], max_length=64, stride=16)
    assert len(item.windows) == 2 and [r for r, _ in item.starts] == [0]
    row, token = item.starts[0]
    w = item.windows[row]
    assert group.passages[0][w.offsets[token][0] :].startswith("Paris")
    width = max(len(w.input_ids) for w in item.windows)
    logits = torch.zeros(2, width)
    logits[0, token] = 5.0
    # Per-window softmaxes ignore the second passage; the shared one pays for its [CLS] and tokens too.
    alone = group_loss(logits, [item], [0], "start", shared=False)
    shared = group_loss(logits, [item], [0], "start", shared=True)
    assert float(shared) > 0
    logits[1, 1:] = 5.0  # the negative passage now looks as good as the gold span: shared loss must rise
    assert float(group_loss(logits, [item], [0], "start", shared=True)) > float(shared)
    assert np.isfinite(float(alone))


def test_unanswerable_group_targets_the_cls_of_any_window(tokenizer):
    import torch

    group = GroupExample("q", "Who?", "t", ("Alpha plays.", "Beta plays."), (), "t")
    (item,) = label_groups(tokenizer, [group], max_length=64, stride=16)
    assert item.starts == ()
    width = max(len(w.input_ids) for w in item.windows)
    good = torch.full((2, width), -5.0)
    good[:, 0] = 5.0
    bad = torch.full((2, width), -5.0)
    bad[:, 2] = 5.0
    assert float(group_loss(good, [item], [0], "start", True)) < float(group_loss(bad, [item], [0], "start", True))


def test_schedule_is_drawn_from_the_seed_so_a_resumed_run_continues_the_same_order(tokenizer):
    groups = [GroupExample(str(i), "Q?", "t", ("x " * (i + 1),), (), "t") for i in range(30)]
    items = label_groups(tokenizer, groups, max_length=64, stride=16)
    a = schedule(items, 4, 2.0, random.Random(5))
    b = schedule(items, 4, 2.0, random.Random(5))
    assert a == b and len(a) == 16
    assert sorted(i for batch in a[:8] for i in batch) == list(range(30))


def _pool(n: int) -> list[GroupExample]:
    sources = ["squad2-dev-train", "squadshifts-amazon", "tydiqa-train", "squad1-train-4"]
    return [
        GroupExample(f"q{i}", f"question {i}?", "T", ("passage",), ((0, 3),), sources[i % len(sources)])
        for i in range(n)
    ]


def test_a_continued_run_can_leave_out_exactly_the_questions_an_earlier_run_trained_on():
    pool = _pool(400)
    first = GroupTrainConfig("squad.json", "out", "work", dev_train_share=0.3, qa_more_share=0.5, max_questions=90)
    chosen = select_groups(pool, first, random.Random(first.seed), log=lambda _: None)
    assert len(chosen) == 90
    seen = trained_by(asdict(first), pool)
    assert seen == {(g.source, g.id) for g in chosen}
    # a second run skipping the first, then a third skipping the second: the chain is redrawn from the records
    second = GroupTrainConfig("squad.json", "out", "work", max_questions=100, skip_trained_by=asdict(first))
    rest = [g for g in pool if (g.source, g.id) not in seen]
    second_chosen = select_groups(rest, second, random.Random(second.seed), log=lambda _: None)
    both = trained_by(asdict(second), pool)
    assert both == seen | {(g.source, g.id) for g in second_chosen}
    assert len(both) == 190
