"""Train the span reader on serving-like groups (rag/offline/examples.py) with shared normalisation.

Shared normalisation (Clark & Gardner 2018; Wang et al. 2019, "Multi-passage BERT"): the start and end
softmaxes of a question run over the passage tokens of *all* its windows together, so span scores compare
across passages at serving time, and the no-answer target is "the [CLS] of any window": "none of these
passages answers it". ``shared_norm=False`` trains every window on its own softmax (the previous recipe).

Resumable: the whole batch schedule is drawn from the seed at the start, and a checkpoint (weights,
optimiser, schedule, step) is written atomically every ``checkpoint_every`` steps; ``resume=True`` continues
from it. The groups (the retrieval for negatives is the slow part) are cached in ``work_dir`` too.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, asdict, dataclass, fields
from pathlib import Path

import numpy as np

from rag.offline.examples import (
    QA_MORE_FILES,
    GroupExample,
    articles_from,
    build_groups,
    load_groups,
    near_miss,
    qa_more_sources,
    save_groups,
    training_sources,
)
from rag.offline.step_loop import (
    Checkpoint,
    ReaderTrainConfig,
    batch_tensors,
    draw_batches,
    qa_model,
    run_steps,
    seed_torch,
    training_record,
)
from rag.reader.windows import Window, make_windows, token_targets

SQUAD_TRAIN_PARTS = frozenset({"squad2-train-first10", "squad1-train-4", "squad-train-untitled"})
QA_MORE = frozenset(name for name, _ in QA_MORE_FILES)


@dataclass
class GroupTrainConfig(ReaderTrainConfig):
    work_dir: str
    _: KW_ONLY
    train_part: str | None = None
    init_from: str | None = None  # a reader folder to continue from; None: the base encoder
    epochs: float = 1.0
    learning_rate: float = 5e-5
    questions_per_batch: int = 8
    negatives: int = 1
    shared_norm: bool = True
    warmup_ratio: float = 0.06
    dev_train_share: float = 1.0  # share of the SQuAD dev training articles' questions kept
    train_part_share: float = 1.0  # share of the SQuAD training-set parts' questions kept
    qa_more: str | None = None  # ../shared/data/qa-more: more answerable questions (never its Reddit file)
    qa_more_share: float = 1.0  # share of the qa-more questions kept
    near_miss_share: float = 0.0  # share of answerable groups that also give a near-miss group (no answer)
    skip_trained_by: dict | None = None  # an earlier run's recorded config: leave out the questions it trained on
    checkpoint_every: int = 100


@dataclass(frozen=True, slots=True)
class GroupWindows:
    windows: tuple[Window, ...]
    starts: tuple[tuple[int, int], ...]  # (window row in group, token) of each gold start
    ends: tuple[tuple[int, int], ...]


def label_groups(tokenizer, groups: Sequence[GroupExample], max_length: int, stride: int) -> list[GroupWindows]:
    pairs = [(gi, pi) for gi, g in enumerate(groups) for pi in range(len(g.passages))]
    out_windows: list[list[Window]] = [[] for _ in groups]
    for lo in range(0, len(pairs), 2000):
        part = pairs[lo : lo + 2000]
        windows = make_windows(
            tokenizer,
            [groups[gi].question for gi, _ in part],
            [groups[gi].passages[pi] for gi, pi in part],
            max_length=max_length,
            stride=stride,
        )
        for w in windows:
            gi, pi = part[w.passage_index]
            out_windows[gi].append(Window(pi, w.input_ids, w.token_type_ids, w.offsets, w.context_start, w.context_end))
    out = []
    for g, windows in zip(groups, out_windows, strict=True):
        starts, ends = [], []
        for row, w in enumerate(windows):
            if w.passage_index != 0 or not g.answers:
                continue
            s, e = token_targets(w, g.answers)
            starts += [(row, t) for t in sorted(s)]
            ends += [(row, t) for t in sorted(e)]
        out.append(GroupWindows(tuple(windows), tuple(starts), tuple(ends)))
    return out


def group_loss(logits, windows_per_group: Sequence[GroupWindows], offsets: Sequence[int], which: str, shared: bool):
    """Negative log-likelihood of the gold positions (any of them) under the question's softmax.

    ``logits``: (windows, length) for the whole batch; ``offsets[g]``: the row of group g's first window."""
    import torch

    losses = []
    for g, first in zip(windows_per_group, offsets, strict=True):
        rows = []
        for r, w in enumerate(g.windows):
            allowed = torch.zeros(logits.shape[1], dtype=torch.bool, device=logits.device)
            allowed[0] = True
            allowed[w.context_start : w.context_end] = True
            rows.append(torch.where(allowed, logits[first + r], torch.full_like(logits[first + r], -1e4)))
        golds = g.starts if which == "start" else g.ends
        if shared:
            flat = torch.cat(rows)
            width = logits.shape[1]
            idx = [r * width + t for r, t in golds] or [r * width for r in range(len(rows))]
            target = flat[torch.tensor(idx, device=logits.device)]
            losses.append(torch.logsumexp(flat, 0) - torch.logsumexp(target, 0))
        else:
            for r, row in enumerate(rows):
                idx = [t for rr, t in golds if rr == r] or [0]
                losses.append(torch.logsumexp(row, 0) - torch.logsumexp(row[torch.tensor(idx)], 0))
    return torch.stack(losses).mean()


def schedule(items: Sequence[GroupWindows], per_batch: int, epochs: float, rng: random.Random) -> list[list[int]]:
    """Every batch of every epoch, drawn up front (so a resumed run continues the same order), grouped by the
    length of a question's longest window."""
    return draw_batches([max(len(w.input_ids) for w in it.windows) for it in items], per_batch, epochs, rng)


def prepare_groups(config: GroupTrainConfig, log: Callable[[str], None]) -> list[GroupExample]:
    """Build (or read back from ``work_dir``) the training groups."""
    from rag.embedding import Embedder
    from rag.engine import model_record
    from rag.offline.train import calibration_titles
    from rag.records import squad_documents
    from rag.retrieval import RetrievalSettings, retrieve
    from rag.squad import VALIDATION_TITLES, load_squad, select_articles
    from rag.store import CorpusIndex, IndexSettings

    work = Path(config.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    held_out = calibration_titles([a["title"] for a in select_articles(load_squad(config.squad_path), "train")])
    config.held_out_for_calibration = held_out
    cached = work / f"groups-neg{config.negatives}-seed{config.seed}{'-qamore' if config.qa_more else ''}.jsonl"
    if cached.is_file():
        groups = load_groups(cached)
        log(f"{len(groups)} training groups read back from {cached}")
        return groups
    sources = training_sources(config.squad_path, config.train_part, set(VALIDATION_TITLES) | set(held_out))
    if config.qa_more:
        sources += qa_more_sources(config.qa_more)
    docs, questions = [], []
    for name, payload in sources:
        _, qs = articles_from(payload, name)
        docs += squad_documents(payload, source=name)
        questions += qs
        log(f"  {name}: {len(payload['data'])} articles, {len(qs)} questions")
    embedder = Embedder().load()
    log(f"indexing {len(docs)} training documents for retrieved negatives")
    index = CorpusIndex.empty(IndexSettings(), model_record(embedder))
    index, _ = index.apply(docs, embedder=embedder)
    settings = RetrievalSettings()

    def search(q: str, k: int):
        return retrieve(index, q, embedder.encode_query(q), k, settings)

    groups = build_groups(questions, index, search, negatives=config.negatives, seed=config.seed, log=log)
    save_groups(groups, cached)
    return groups


def select_groups(
    groups: list[GroupExample], config: GroupTrainConfig, rng: random.Random, log: Callable[[str], None] = print
) -> list[GroupExample]:
    """The groups a run trains on: each source's share, near-miss groups, at most ``max_questions``.

    Draws from ``rng`` in a fixed order, so the same groups, config and seed give the same selection (and the
    batch schedule drawn after it from the same ``rng`` is the same too)."""
    if config.dev_train_share < 1.0:
        groups = [g for g in groups if g.source != "squad2-dev-train" or rng.random() < config.dev_train_share]
    if config.train_part_share < 1.0:
        groups = [g for g in groups if g.source not in SQUAD_TRAIN_PARTS or rng.random() < config.train_part_share]
    if config.qa_more_share < 1.0:
        groups = [g for g in groups if g.source not in QA_MORE or rng.random() < config.qa_more_share]
    if config.near_miss_share > 0:
        misses = [m for g in groups if rng.random() < config.near_miss_share and (m := near_miss(g)) is not None]
        log(f"{len(misses)} near-miss groups (the answer's sentence removed from the gold passage)")
        groups = groups + misses
    if config.max_questions:
        rng.shuffle(groups)
        groups = groups[: config.max_questions]
    return groups


def trained_by(recorded: dict, groups: list[GroupExample]) -> set[tuple[str, str]]:
    """(source, id) of the questions an earlier run trained on, drawn again from its recorded config (the
    ``config`` of its reader.json, kept whole in this run's record so the chain can always be redrawn).

    ``groups`` must be the same cached groups that run read (same negatives, seed and sources); an earlier
    run that itself skipped questions is followed back through its own ``skip_trained_by``."""
    known = {f.name for f in fields(GroupTrainConfig)}
    earlier = GroupTrainConfig(**{k: v for k, v in recorded.items() if k in known})
    pool = groups
    seen: set[tuple[str, str]] = set()
    if earlier.skip_trained_by:
        seen = trained_by(earlier.skip_trained_by, groups)
        pool = [g for g in groups if (g.source, g.id) not in seen]
    chosen = select_groups(pool, earlier, random.Random(earlier.seed), log=lambda _: None)
    return seen | {(g.source, g.id) for g in chosen}


def train_groups(config: GroupTrainConfig, *, resume: bool = False, log: Callable[[str], None] = print) -> dict:
    """Train on the configured sources; write fp16 weights and ``reader.json`` to ``config.out_dir``; return the
    record."""
    from rag.checksums import sha256_file

    groups = prepare_groups(config, log)
    rng = random.Random(config.seed)
    if config.skip_trained_by:
        seen = trained_by(config.skip_trained_by, groups)
        groups = [g for g in groups if (g.source, g.id) not in seen]
        log(f"{len(seen)} questions left out (the earlier run trained on them); {len(groups)} remain")
    groups = select_groups(groups, config, rng, log)
    data = {
        "squad_sha256": sha256_file(config.squad_path),
        "train_part_sha256": {p.name: sha256_file(p) for p in sorted(Path(config.train_part).glob("*.json"))}
        if config.train_part
        else {},
        "qa_more_sha256": {file: sha256_file(Path(config.qa_more) / file) for _, file in QA_MORE_FILES}
        if config.qa_more
        else {},
        "calibration_articles": config.held_out_for_calibration,
    }
    return fit_groups(groups, config, rng, data=data, resume=resume, log=log)


def fit_groups(
    groups: Sequence[GroupExample],
    config: GroupTrainConfig,
    rng: random.Random,
    *,
    data: dict,
    recipe: str = "serving-like groups (gold chunk + retrieved negatives), shared normalisation",
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Train on ``groups`` (from ``config.init_from``, or the base encoder), checkpointing in ``config.work_dir``;
    write fp16 weights and ``reader.json`` (``data`` describes what was trained on) to ``config.out_dir``.

    The batch schedule is drawn from ``rng``: the same groups and the same ``rng`` state give the same run, which
    is what lets ``resume`` continue it."""
    from transformers import AutoTokenizer

    from rag.reader.model import base_model_path, save_reader

    seed_torch(config)
    tokenizer = AutoTokenizer.from_pretrained(base_model_path())
    items = label_groups(tokenizer, groups, config.max_length, config.stride)
    by_source: dict[str, int] = {}
    for g in groups:
        by_source[g.source] = by_source.get(g.source, 0) + 1
    windows = sum(len(it.windows) for it in items)
    log(f"{len(items)} questions ({by_source}) -> {windows} windows; held out: {config.held_out_for_calibration}")
    model = qa_model(config, config.init_from)

    def loss_of(batch_idx: list[int]):
        batch = [items[i] for i in batch_idx]
        offsets = list(np.cumsum([0] + [len(it.windows) for it in batch])[:-1])
        out = model(**batch_tensors([w for it in batch for w in it.windows], config.device))
        return (
            group_loss(out.start_logits, batch, offsets, "start", config.shared_norm)
            + group_loss(out.end_logits, batch, offsets, "end", config.shared_norm)
        ) / 2

    batches = schedule(items, config.questions_per_batch, config.epochs, rng)
    work = Path(config.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = Checkpoint(work / "checkpoint.pt", config.checkpoint_every, _schedule_key(config))
    steps = run_steps(model, config, batches, loss_of, log=log, log_every=25, checkpoint=checkpoint, resume=resume)
    data = {**data, "questions": len(items), "questions_by_source": by_source, "windows": windows}
    record = training_record(config, data, steps, recipe=recipe)
    save_reader(model, Path(config.out_dir), record)
    log(f"saved to {config.out_dir}")
    return record


def _schedule_key(config: GroupTrainConfig) -> str:
    """What must match for a checkpoint to be resumed (everything that shapes the batches and the optimiser)."""
    keep = {k: v for k, v in asdict(config).items() if k not in ("out_dir", "threads", "device", "checkpoint_every")}
    return json.dumps(keep, sort_keys=True)
