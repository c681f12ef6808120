"""The trust benchmark: does the service answer what the articles state, and decline what they do not?

Built from the SQuAD 2.0 *training* articles held out from reader training (``calibration_titles``), never
from the validation articles. Four kinds of question, each asked of its own corpus (the seed plus training
articles, so that retrieval has distractors):

- ``answerable`` and ``unanswerable``: the held-out articles' own questions (SQuAD 2.0's adversarial
  unanswerables are on the topic of their paragraph but not stated in it), over the seed and all 28 training
  articles (corpus ``covered``);
- ``near_miss``: an answerable question whose answer sentence was removed from its paragraph while the rest of
  the article stays indexed. Each round takes one answerable question per paragraph (round r: the r-th) and
  removes the sentence(s) holding its gold answers; a question is kept only when none of its accepted answer
  strings occurs anywhere in that round's corpus (checked on SQuAD-normalised text, at word boundaries);
- ``not_covered``: a sample of the held-out questions asked of the corpus without the held-out articles.

The figures are per kind (share declined, answerable F1) and overall (the selective-QA figures of
``rag.evaluation.metrics.selective_figures``), on a stated *mix*: answerable questions count for two thirds,
the three unanswerable kinds for a ninth each, whatever their numbers in the benchmark.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.records import squad_documents
from rag.sentences import remove_answer_sentences
from rag.squad import GoldAnswer, SquadQuestion
from rag.text import normalize_answer
from rag.types import Document

KINDS = ("answerable", "unanswerable", "near_miss", "not_covered")
#: The mix the operating rule and the overall figures are stated on: 2 answerable for 1 unanswerable of any kind.
MIX = {"answerable": 2 / 3, "unanswerable": 1 / 9, "near_miss": 1 / 9, "not_covered": 1 / 9}
NEAR_MISS_ROUNDS = 4


@dataclass(frozen=True, slots=True)
class TrustCorpus:
    """One corpus of the benchmark and the questions asked of it (``kind`` per question)."""

    name: str
    documents: tuple[Document, ...]
    questions: tuple[SquadQuestion, ...]
    kinds: tuple[str, ...]


def _is_answerable(qa: dict[str, Any]) -> bool:
    return not qa.get("is_impossible", False) and bool(qa.get("answers"))


def near_miss_round(
    articles: Sequence[dict[str, Any]], round_: int
) -> tuple[list[dict[str, Any]], list[SquadQuestion]]:
    """The articles with, in each paragraph, the answer sentence of its ``round_``-th answerable question
    removed; and those questions (their gold answers kept for the record; the right response is no answer)."""
    changed, chosen = [], []
    for article in articles:
        paragraphs = []
        for index, paragraph in enumerate(article["paragraphs"]):
            context = paragraph["context"]
            answerable = [qa for qa in paragraph["qas"] if _is_answerable(qa)]
            if len(answerable) > round_:
                qa = answerable[round_]
                spans = [(int(a["answer_start"]), int(a["answer_start"]) + len(a["text"])) for a in qa["answers"]]
                spans = [(s, e) for s, e in spans if context[s:e]]
                if spans:
                    context = remove_answer_sentences(context, spans)
                    chosen.append(
                        SquadQuestion(
                            id=f"{qa['id']}#near-miss",
                            question=qa["question"],
                            title=article["title"],
                            context=context,
                            answers=tuple(dict.fromkeys(GoldAnswer(a["text"], -1) for a in qa["answers"])),
                            is_impossible=True,
                            paragraph_index=index,
                            paragraph_start=-1,
                        )
                    )
            paragraphs.append({"context": context, "qas": []})
        changed.append({"title": article["title"], "paragraphs": paragraphs})
    return changed, chosen


def stated_anywhere(answers: Sequence[GoldAnswer], documents: Sequence[Document]) -> bool:
    """Whether any accepted answer string occurs in any document (SQuAD-normalised, at word boundaries)."""
    corpus = " " + " ".join(normalize_answer(d.text) for d in documents) + " "
    return any((g := normalize_answer(a.text)) and f" {g} " in corpus for a in answers)


def build_corpora(
    train_articles: Sequence[dict[str, Any]],
    held_out: set[str],
    seed_docs: Sequence[Document],
    questions: Sequence[SquadQuestion],
    *,
    not_covered_sample: int = 400,
    rounds: int = NEAR_MISS_ROUNDS,
    seed: int = 13,
) -> list[TrustCorpus]:
    """The benchmark's corpora and questions; ``questions`` are the held-out articles' own questions."""
    held = [a for a in train_articles if a["title"] in held_out]
    others = [a for a in train_articles if a["title"] not in held_out]
    covered = (*seed_docs, *squad_documents({"data": list(train_articles)}))
    out = [
        TrustCorpus(
            "covered",
            covered,
            tuple(questions),
            tuple("unanswerable" if q.is_impossible else "answerable" for q in questions),
        )
    ]
    sample = random.Random(seed).sample(list(questions), min(not_covered_sample, len(questions)))
    out.append(
        TrustCorpus(
            "not-covered",
            (*seed_docs, *squad_documents({"data": others})),
            tuple(sample),
            ("not_covered",) * len(sample),
        )
    )
    for r in range(rounds):
        changed, chosen = near_miss_round(held, r)
        docs = (*seed_docs, *squad_documents({"data": others + changed}))
        kept = tuple(q for q in chosen if not stated_anywhere(q.answers, docs))
        out.append(TrustCorpus(f"near-miss-{r + 1}", docs, kept, ("near_miss",) * len(kept)))
    return out


# ---------------------------------------------------------------------------------------------- figures

PRECISION_TARGET = 0.80
THRESHOLD_RULE = (
    f"the lowest threshold at which at least {PRECISION_TARGET:.0%} of the answers given are right, on held-out "
    "training articles, in a mix of two answerable questions for one unanswerable (adversarial, near miss or not "
    "covered, equally)"
)
GRID = tuple(round(0.005 * i, 3) for i in range(1, 200))


@dataclass(frozen=True, slots=True)
class Decided:
    """One benchmark question as the service would answer it."""

    kind: str
    article: str
    score: float  # the top answer's score (0 when the reader proposed nothing)
    right: bool  # the top answer is right (F1 >= 0.5 against a gold answer of an answerable question)
    f1: float  # the top answer's F1 (0 for the unanswerable kinds)
    threshold: float | None = None  # the threshold that decided it (cross-fit: its fold's)


def mix_weights(kinds: Sequence[str]) -> list[float]:
    """Each question's weight in the MIX: a kind's share spread evenly over its questions."""
    counts = {k: kinds.count(k) for k in set(kinds)}
    present = sum(MIX[k] for k in counts)
    return [MIX[k] / present / counts[k] for k in kinds]


def given_precision(decided: Sequence[Decided], threshold: float | None) -> float | None:
    """The share of the answers given at ``threshold`` (None: each question's own, the cross-fit's) that are
    right, on the MIX (None: nothing answered)."""
    weights = mix_weights([d.kind for d in decided])
    answered = [(w, d.right) for w, d in zip(weights, decided, strict=True) if _answered(d, threshold)]
    total = sum(w for w, _ in answered)
    return sum(w for w, r in answered if r) / total if total > 0 else None


def operating_threshold(decided: Sequence[Decided], target: float = PRECISION_TARGET) -> float:
    """THRESHOLD_RULE: the lowest threshold on GRID whose given answers are at least ``target`` right on the
    MIX (the highest on the grid when none is)."""
    for t in GRID:
        p = given_precision(decided, t)
        if p is not None and p >= target:
            return t
    return GRID[-1]


def _answered(d: Decided, threshold: float | None) -> bool:
    t = d.threshold if threshold is None else threshold
    return t is not None and d.score >= t


def kind_figures(decided: Sequence[Decided], threshold: float | None = None) -> dict[str, dict[str, float]]:
    """Per kind: questions, share declined, and for answerable questions their F1 (declined: 0) and the share
    of the answers given that are right. ``threshold`` None: each question's own (cross-fit) threshold."""
    out: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        members = [d for d in decided if d.kind == kind]
        if not members:
            continue
        given = [d for d in members if _answered(d, threshold)]
        row: dict[str, float] = {"questions": len(members), "declined": 1 - len(given) / len(members)}
        if kind == "answerable":
            row["f1"] = 100 * sum(d.f1 for d in given) / len(members)
            row["right_among_given"] = sum(d.right for d in given) / len(given) if given else float("nan")
        out[kind] = row
    return out


def trust_report(decided: Sequence[Decided], about: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's figures: per kind at each question's threshold, the selective figures on the MIX and on
    the questions as they are, and the risk-coverage curve and operating curve for plots and comparisons."""
    from rag.evaluation.metrics import risk_coverage_curve, selective_figures

    scores = [d.score for d in decided]
    right = [d.right for d in decided]
    weights = mix_weights([d.kind for d in decided])
    thresholds = sorted({d.threshold for d in decided if d.threshold is not None})
    operating = []
    for t in GRID:
        per_kind = kind_figures(decided, t)
        operating.append(
            {
                "threshold": t,
                "precision_mix": given_precision(decided, t),
                **{f"declined_{k}": round(v["declined"], 4) for k, v in per_kind.items()},
                "answerable_f1": round(per_kind.get("answerable", {}).get("f1", float("nan")), 2),
            }
        )
    return {
        **about,
        "mix": MIX,
        "threshold_rule": THRESHOLD_RULE,
        "thresholds": thresholds,  # one per fold of the cross-fit
        "kinds": kind_figures(decided),
        "given_precision_mix": given_precision(decided, None),
        "selective_mix": selective_figures(scores, right, weights),
        "selective_unweighted": selective_figures(scores, right),
        "curve": [
            {"coverage": round(c, 4), "risk": round(r, 4), "threshold": round(t, 4)}
            for c, r, t in risk_coverage_curve(scores, right, weights)
        ],
        "operating_curve": operating,
        # Per question, in the benchmark's fixed order (the same for every reader): paired comparisons.
        "questions": {
            "kind": [d.kind for d in decided],
            "article": [d.article for d in decided],
            "score": [round(d.score, 5) for d in decided],
            "right": [int(d.right) for d in decided],
            "f1": [round(d.f1, 4) for d in decided],
            "threshold": [d.threshold for d in decided],
        },
    }


def decided_from(report: dict[str, Any]) -> list[Decided]:
    """The per-question decisions a report holds (``trust_report``'s ``questions``)."""
    q = report["questions"]
    return [
        Decided(kind, article, score, bool(right), f1, threshold)
        for kind, article, score, right, f1, threshold in zip(
            q["kind"], q["article"], q["score"], q["right"], q["f1"], q["threshold"], strict=True
        )
    ]


def headline(decided: Sequence[Decided]) -> dict[str, float]:
    """The figures a comparison of two readers looks at (each question at its own fold's threshold)."""
    from rag.evaluation.metrics import selective_figures

    kinds = kind_figures(decided)
    sel = selective_figures(
        [d.score for d in decided], [d.right for d in decided], mix_weights([d.kind for d in decided])
    )
    out = {
        "auroc_mix": sel["auroc"],
        "aurc_mix": sel["aurc"],
        "coverage_at_80_mix": sel["coverage_at_80"],
        "answerable_f1": kinds["answerable"]["f1"],
        "answerable_f1_forced": 100
        * sum(d.f1 for d in decided if d.kind == "answerable")
        / max(1, sum(d.kind == "answerable" for d in decided)),
    }
    out |= {f"declined_{k}": v["declined"] for k, v in kinds.items()}
    return out


def paired_bootstrap(
    a: Sequence[Decided], b: Sequence[Decided], samples: int = 1000, seed: int = 13
) -> dict[str, dict[str, float]]:
    """``headline(b) - headline(a)`` with 95% intervals from resampling the questions (the same resample for
    both: the benchmark's questions are the same, in the same order)."""
    import numpy as np

    if [d.kind for d in a] != [d.kind for d in b]:
        raise ValueError("the two reports hold different questions")
    base, other = headline(a), headline(b)
    rng = np.random.default_rng(seed)
    n = len(a)
    draws: dict[str, list[float]] = {k: [] for k in base}
    for _ in range(samples):
        idx = rng.integers(0, n, n)
        ha, hb = headline([a[i] for i in idx]), headline([b[i] for i in idx])
        for k in draws:
            draws[k].append(hb[k] - ha[k])
    return {
        k: {
            "a": base[k],
            "b": other[k],
            "difference": other[k] - base[k],
            "low": float(np.percentile(draws[k], 2.5)),
            "high": float(np.percentile(draws[k], 97.5)),
        }
        for k in base
    }


# ---------------------------------------------------------------------------------------------- output


def write_trust(report: dict[str, Any], out_dir: Path) -> None:
    """``summary.json`` (every figure, the curves included) and ``report.png`` (the risk-coverage curve on the
    mix, and the share declined per kind against the threshold)."""
    import json

    from rag.evaluation.plots import plot_risk_coverage
    from rag.evaluation.summary import finite
    from rag.extras import have

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(finite(report), indent=2) + "\n", encoding="utf-8")
    if not have("matplotlib"):
        logging.getLogger(__name__).warning("report.png not drawn: matplotlib is not installed (the eval extra)")
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    plot_risk_coverage(left, [("cross-fitted score, on the mix", report["curve"])])
    left.legend()
    sel = report["selective_mix"]
    left.set_title(f"risk-coverage (AUROC {sel['auroc']:.2f}, AURC {sel['aurc']:.3f})")
    curve = report["operating_curve"]
    for kind in KINDS:
        key = f"declined_{kind}"
        if curve and key in curve[0]:
            right.plot([p["threshold"] for p in curve], [p[key] for p in curve], label=kind.replace("_", " "))
    for t in report["thresholds"]:
        right.axvline(t, color="tab:gray", linestyle=":", linewidth=1)
    right.set_xlabel("threshold (dotted: the cross-fit's, one per fold)")
    right.set_ylabel("share declined")
    right.set_xlim(0, 1)
    right.set_ylim(0, 1.02)
    right.grid(alpha=0.3)
    right.legend()
    right.set_title("declined per kind of question")
    fig.suptitle(f"trust benchmark: {report.get('reader_dir', report.get('reader', ''))}")
    fig.tight_layout()
    fig.savefig(out_dir / "report.png", dpi=100)
    plt.close(fig)


def print_trust(report: dict[str, Any], console) -> None:
    """Per kind and overall, as a rich table."""
    from rich.table import Table

    table = Table(title="trust benchmark (held-out training articles, cross-fitted)")
    for column in ("kind", "questions", "declined", "answerable F1", "right among given"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind, row in report["kinds"].items():
        table.add_row(
            kind.replace("_", " "),
            str(row["questions"]),
            f"{100 * row['declined']:.1f}%",
            f"{row['f1']:.1f}" if "f1" in row else "",
            f"{100 * row['right_among_given']:.1f}%" if "right_among_given" in row else "",
        )
    console.print(table)
    sel, raw = report["selective_mix"], report["selective_unweighted"]
    figures = Table(title=f"selective answering ({report['threshold_rule']})")
    for column in ("figure", "on the mix", "as asked"):
        figures.add_column(column, justify="left" if column == "figure" else "right")
    for key, label in (
        ("auroc", "AUROC (right vs rest)"),
        ("coverage_at_80", "coverage at 80% right"),
        ("coverage_at_90", "coverage at 90% right"),
        ("aurc", "area under risk-coverage"),
    ):
        figures.add_row(label, f"{sel[key]:.3f}", f"{raw[key]:.3f}")
    precision = report.get("given_precision_mix")
    figures.add_row("right among answers given", f"{precision:.3f}" if precision is not None else "–", "")
    console.print(figures)
