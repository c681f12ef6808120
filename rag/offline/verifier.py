"""A sentence-level answer verifier (an experiment, not on the serving path): a cross-encoder over (question, the
answer's sentence with the span marked) that scores whether the sentence states the answer.

Trained from all-MiniLM-L6-v2 on the reader's training groups (rag/offline/examples.py), never on the held-out
or validation articles. Each answerable group gives one positive, its gold span marked in its own sentence, and
negatives of the kinds the reader gets wrong: another span of the same sentence (right sentence, wrong span), a
span of the asked-for shape in another sentence of the gold passage (the topic, not the fact: a near miss), and a
span in the retrieved negative passage; an unanswerable group gives negatives from its passage.

``eval/verifier_experiment.py`` adds its score to the calibration's features and measures the trust benchmark
with and without it (cross-fitted): the verifier ships only where it pays for its serving cost.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.offline.examples import GroupExample
from rag.sentences import sentence_around

MAX_LENGTH = 128
OPEN, CLOSE = "«", "»"
_CANDIDATE = re.compile(
    r"[A-Z][\w'’.-]*(?:\s+(?:of\s+|the\s+|de\s+)?[A-Z][\w'’.-]*)*"  # a run of capitalised words (a name)
    r"|[$€£]?\d[\d,.]*(?:\s*(?:%|per cent|percent|million|billion|thousand))?"  # a number, an amount
)


@dataclass(frozen=True, slots=True)
class Pair:
    question: str
    sentence: str  # with the span marked: ... « span » ...
    label: int


def mark(sentence: str, start: int, end: int) -> str:
    """The sentence with ``sentence[start:end]`` marked as the proposed answer."""
    return f"{sentence[:start]}{OPEN} {sentence[start:end]} {CLOSE}{sentence[end:]}"


def _sentences(text: str) -> list[tuple[int, int]]:
    """The sentences of a passage, as (start, end), in order."""
    out, pos = [], 0
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        s, e = sentence_around(text, pos, pos)
        out.append((s, e))
        pos = max(e, pos + 1)
    return out


#: Capitalised only because they open a sentence: not names.
_OPENERS = frozenset(
    {
        "the",
        "a",
        "an",
        "of",
        "in",
        "on",
        "at",
        "for",
        "by",
        "with",
        "as",
        "from",
        "to",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "he",
        "she",
        "they",
        "we",
        "i",
        "you",
        "his",
        "her",
        "their",
        "but",
        "and",
        "or",
        "so",
        "if",
        "when",
        "while",
        "after",
        "before",
        "during",
        "since",
        "however",
        "also",
        "there",
        "here",
    }
)


def _spans(sentence: str, rng: random.Random, avoid: tuple[int, int] | None = None) -> list[tuple[int, int]]:
    """Candidate spans of a sentence: names and numbers first, else a few words at random."""
    found = [m.span() for m in _CANDIDATE.finditer(sentence) if sentence[m.start() : m.end()].lower() not in _OPENERS]
    found = [(s, e) for s, e in found if avoid is None or e <= avoid[0] or s >= avoid[1]]
    if not found:
        words = [m.span() for m in re.finditer(r"\S+", sentence)]
        words = [(s, e) for s, e in words if avoid is None or e <= avoid[0] or s >= avoid[1]]
        if not words:
            return []
        i = rng.randrange(len(words))
        j = min(len(words), i + rng.randint(1, 3))
        found = [(words[i][0], words[j - 1][1])]
    return found


def pairs_of(group: GroupExample, rng: random.Random, negatives: int = 3) -> list[Pair]:
    """One positive (answerable groups) and up to ``negatives`` negatives of the kinds described above."""
    out: list[Pair] = []
    gold_text = group.passages[0]
    golds = list(group.answers)
    if golds:
        s, e = golds[0]
        s_start, s_end = sentence_around(gold_text, s, e)
        sentence = gold_text[s_start:s_end]
        out.append(Pair(group.question, mark(sentence, s - s_start, e - s_start), 1))
        wrong = _spans(sentence, rng, avoid=(s - s_start, e - s_start))
        if wrong:
            ws, we = rng.choice(wrong)
            out.append(Pair(group.question, mark(sentence, ws, we), 0))
    held = [sentence_around(gold_text, s, e) for s, e in golds]
    others = [(a, b) for a, b in _sentences(gold_text) if not any(a < he and hs < b for hs, he in held)]
    pools = [(gold_text, others)]
    if len(group.passages) > 1:
        pools.append((group.passages[1], _sentences(group.passages[1])))
    tries = 0
    while len(out) < negatives + (1 if golds else 0) and tries < 10:
        tries += 1
        text, sentences = rng.choice(pools)
        if not sentences:
            continue
        a, b = rng.choice(sentences)
        sentence = text[a:b]
        spans = _spans(sentence, rng)
        if spans:
            ws, we = rng.choice(spans)
            out.append(Pair(group.question, mark(sentence, ws, we), 0))
    return out


def train_verifier(
    groups: Sequence[GroupExample],
    out_dir: Path,
    *,
    questions: int = 4000,
    batch_size: int = 32,
    learning_rate: float = 5e-5,
    seed: int = 13,
    threads: int = 2,
    log: Callable[[str], None] = print,
) -> dict:
    """Fine-tune the cross-encoder for one pass over the pairs of ``questions`` groups; save it to ``out_dir``."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, get_linear_schedule_with_warmup

    from rag.offline.step_loop import adamw, optimizer_step
    from rag.reader.model import base_model_path

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = random.Random(seed)
    chosen = rng.sample(list(groups), min(questions, len(groups)))
    pairs = [p for g in chosen for p in pairs_of(g, rng)]
    rng.shuffle(pairs)
    positives = sum(p.label for p in pairs)
    log(f"{len(pairs)} pairs ({positives} positive) from {len(chosen)} questions")
    tokenizer = AutoTokenizer.from_pretrained(base_model_path())
    model = AutoModelForSequenceClassification.from_pretrained(base_model_path(), num_labels=1)
    model.train()
    optimizer = adamw(model, learning_rate, 0.01)
    steps = (len(pairs) + batch_size - 1) // batch_size
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.06 * steps), steps)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    started = time.perf_counter()
    losses: list[float] = []
    for step in range(steps):
        batch = pairs[step * batch_size : (step + 1) * batch_size]
        enc = tokenizer(
            [p.question for p in batch],
            [p.sentence for p in batch],
            truncation="longest_first",
            max_length=MAX_LENGTH,
            padding=True,
            return_tensors="pt",
        )
        logits = model(**enc).logits.squeeze(-1)
        loss = loss_fn(logits, torch.tensor([float(p.label) for p in batch]))
        losses.append(optimizer_step(model, optimizer, scheduler, loss))
        if (step + 1) % 25 == 0 or step + 1 == steps:
            elapsed = time.perf_counter() - started
            log(
                f"step {step + 1}/{steps} loss {sum(losses[-50:]) / len(losses[-50:]):.3f} "
                f"{elapsed / (step + 1):.2f} s/step, eta {(steps - step - 1) * elapsed / (step + 1) / 60:.1f} min"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    record = {
        "pairs": len(pairs),
        "positives": positives,
        "questions": len(chosen),
        "steps": steps,
        "seconds": round(time.perf_counter() - started, 1),
    }
    log(f"saved to {out_dir}: {record}")
    return record


class Verifier:
    """The trained cross-encoder in torch (experiments only): P(the sentence states the marked answer)."""

    def __init__(self, folder: Path, threads: int = 2) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        torch.set_num_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder).eval()

    def score(self, items: Sequence[tuple[str, str]], batch_size: int = 64) -> list[float]:
        """``items``: (question, marked sentence) pairs."""
        import torch

        out: list[float] = []
        with torch.inference_mode():
            for i in range(0, len(items), batch_size):
                part = items[i : i + batch_size]
                enc = self.tokenizer(
                    [q for q, _ in part],
                    [s for _, s in part],
                    truncation="longest_first",
                    max_length=MAX_LENGTH,
                    padding=True,
                    return_tensors="pt",
                )
                out += torch.sigmoid(self.model(**enc).logits.squeeze(-1)).tolist()
        return out


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m rag.offline.verifier --groups FILE --out DIR [--questions N]``"""
    import argparse

    from rag.offline.examples import load_groups

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", required=True, help="training groups (rag train-reader --prepare-only)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--questions", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    train_verifier(
        load_groups(Path(args.groups)), Path(args.out), questions=args.questions, threads=args.threads,
        log=lambda m: print(m, flush=True),
    )  # fmt: skip


if __name__ == "__main__":
    main()
