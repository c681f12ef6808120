"""A run's ``report.png`` (recall@k, latency histogram, risk-coverage), drawn with matplotlib (the eval extra)
when it is installed."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rag.evaluation.results import QuestionResult

log = logging.getLogger(__name__)


def plot_report(summary: dict[str, Any], results: Sequence[QuestionResult], path: Path) -> None:
    """Recall@k curve, latency histogram and (QA) the risk-coverage curve, written with the Agg backend; skipped
    with a note when matplotlib (the eval extra) is not installed."""
    from rag.extras import have

    if not have("matplotlib"):
        log.warning("%s not drawn: matplotlib is not installed (pip install -e '.[eval]')", path)
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = summary["retrieval"]["recall_curve"]
    selective = summary.get("selective")
    fig, axes = plt.subplots(1, 3 if selective else 2, figsize=(16.5 if selective else 11, 4))
    left, right = axes[0], axes[1]
    if selective:
        plot_risk_coverage(axes[2], [(summary["name"] or "run", selective["curve"])])
        if selective.get("coverage") is not None:
            axes[2].scatter(
                [selective["coverage"]], [1 - (selective.get("precision") or 0.0)], color="tab:red", zorder=3,
                label="at the service's threshold",
            )  # fmt: skip
            axes[2].legend()
        auroc, aurc = selective["auroc"], selective["aurc"]
        axes[2].set_title(
            "risk-coverage"
            + (f" (AUROC {auroc:.2f}, AURC {aurc:.3f})" if auroc is not None and aurc is not None else "")
        )
    ks = list(range(1, len(curve) + 1))
    left.plot(ks, curve, marker="o" if len(ks) <= 10 else None)
    left.set_xlabel("k")
    left.set_ylabel("recall@k" if summary["kind"] == "retrieval" else "hit@k (gold passage in top k)")
    left.set_ylim(0, 1.02)
    left.grid(alpha=0.3)
    left.set_title(f"{summary['dataset']}: retrieval (n={summary['retrieval']['n']})")
    latencies = [r.latency_ms for r in results if r.error is None]
    right.hist(latencies, bins=min(40, max(5, len(latencies) // 5)), color="tab:gray")
    for key, style in (("p50_ms", "-"), ("p95_ms", "--")):
        value = summary["latency"][key]
        if value is not None and math.isfinite(value):
            right.axvline(value, color="tab:red", linestyle=style, label=f"{key[:3]} {value:.0f} ms")
    right.set_xlabel("latency (ms, client-measured)")
    right.set_ylabel("questions")
    right.legend()
    right.set_title(f"latency ({summary['latency']['throughput_qps']:.2f} q/s)")
    fig.suptitle(summary["name"] or summary["dataset"])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_risk_coverage(ax, curves: Sequence[tuple[str, Sequence[dict]]]) -> None:
    """Risk (share of the answers given that are wrong) against coverage (share of questions answered), one
    line per named curve of ``{"coverage", "risk"}`` points."""
    for label, points in curves:
        ax.plot([p["coverage"] for p in points], [p["risk"] for p in points], label=label)
    ax.axhline(0.2, color="tab:gray", linestyle=":", linewidth=1)
    ax.set_xlabel("coverage (share of questions answered)")
    ax.set_ylabel("risk (share of answers wrong)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
