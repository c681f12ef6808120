"""How well the fitted generator stands in for real chunk vectors: IVF recall curves on the real vectors of the
cached indexes, on as many fitted vectors and on as many isotropic ones, at the real corpus size; and those
curves as the notes bench.md shows under the scale section (``eval/bench.py --scale --scale-fit-check``,
``eval/benchmark/fitted_vectors.py --check``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from benchmark.fitted_vectors import DIM, RANK, SEED, TOPICS, Fitted, RealVectors, fit
from benchmark.scale import nlist_for
from benchmark.scale_vectors import Synthetic


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, truth, strict=True)) / truth.size


def recall_curve(
    base: np.ndarray, queries: np.ndarray, nlist: int, nprobes: Sequence[int], m: int = 48
) -> dict[str, list[float]]:
    """recall@10 per nprobe of IVF-SQ8 and IVF-PQ (rag.dense.DenseIndex.build, as --scale builds up to 2M)."""
    import faiss

    from rag.dense import DenseIndex

    exact = faiss.IndexFlatIP(DIM)
    exact.add(base)
    truth = exact.search(queries, 10)[1]
    keys = np.arange(len(base), dtype=np.int64)
    out: dict[str, list[float]] = {}
    for kind, params in (("ivf-sq8", {"nlist": nlist}), ("ivf-pq", {"nlist": nlist, "m": m})):
        dense = DenseIndex.build(base, keys, kind=kind, **params)
        if dense.kind != kind:
            raise ValueError(f"{len(base)} vectors are too few for {nlist} lists")
        curve = []
        for nprobe in nprobes:
            dense.index.nprobe = nprobe
            curve.append(round(_recall(dense.index.search(queries, 10)[1], truth), 4))
        out[kind] = curve
    sims = exact.search(queries, 10)[0]
    out["median_sim_1st"] = [round(float(np.median(sims[:, 0])), 3)]
    out["median_sim_10th"] = [round(float(np.median(sims[:, 9])), 3)]
    return out


def fit_check(
    real: RealVectors,
    *,
    nprobes: Sequence[int] = (1, 2, 4, 8, 16, 32),
    held_out: int = 500,
    seed: int = SEED,
    topics: int = TOPICS,
    rank: int = RANK,
    log=print,
) -> dict:
    """recall@10 per nprobe at the real corpus size: on the real vectors (queries: one chunk of each of
    ``held_out`` documents held out whole), on as many vectors of a model fitted to the rest (same settings as
    the stored one), and on as many isotropic ``Synthetic`` vectors. nlist as ``--scale`` picks it."""
    rng = np.random.default_rng([seed, 7])
    n_docs = int(real.docs.max()) + 1
    out_docs = rng.permutation(n_docs)[: min(held_out, n_docs // 5)]
    is_out = np.isin(real.docs, out_docs)
    base = np.ascontiguousarray(real.vectors[~is_out])
    order = rng.permutation(np.flatnonzero(is_out))
    _, first = np.unique(real.docs[order], return_index=True)
    queries = np.ascontiguousarray(real.vectors[order[first]])
    n, nlist = len(base), nlist_for(len(base))
    log(f"fit check: {n:,} real vectors, {len(queries)} held-out documents as queries, nlist {nlist}")
    model = Fitted(fit(base, real.docs[~is_out], topics=topics, rank=rank, seed=seed), seed=13)
    iso = Synthetic()
    sets = {
        "real": (base, queries),
        "fitted": (np.concatenate([c for _, c in model.chunks(n)]), model.queries(len(queries))),
        "isotropic": (np.concatenate([c for _, c in iso.chunks(n)]), iso.queries(len(queries))),
    }
    curves = {}
    for name, (b, q) in sets.items():
        curves[name] = recall_curve(b, q, nlist, nprobes)
        log(
            f"fit check {name:9s} ivf-sq8 "
            + " ".join(f"{r:.3f}" for r in curves[name]["ivf-sq8"])
            + " | ivf-pq "
            + " ".join(f"{r:.3f}" for r in curves[name]["ivf-pq"])
            + f" | median similarity of the 1st / 10th neighbour {curves[name]['median_sim_1st'][0]:.3f} / "
            f"{curves[name]['median_sim_10th'][0]:.3f}"
        )

    def gap(name: str) -> float:
        diffs = [
            abs(a - b)
            for kind in ("ivf-sq8", "ivf-pq")
            for a, b in zip(curves[name][kind], curves["real"][kind], strict=True)
        ]
        return round(float(np.mean(diffs)), 4)

    return {
        "vectors": n,
        "queries": len(queries),
        "nlist": nlist,
        "nprobes": list(nprobes),
        "pq_m": 48,
        "sources": real.sources,
        "curves": curves,
        "mean_abs_gap_to_real": {"fitted": gap("fitted"), "isotropic": gap("isotropic")},
        "protocol": f"real: {len(queries)} documents held out whole, one chunk of each as a query, the rest as the "
        f"base; fitted: a model with the stored one's settings ({topics} topics, seed {seed}) fitted to the base "
        "only, its own base and queries; isotropic: benchmark.scale.Synthetic(). Same nlist, nprobe, m for all.",
    }


def check_notes(check: dict) -> list[str]:
    """The fit check as Markdown-note lines (bench.md renders the scale section's notes)."""
    if not check or "curves" not in check:
        return [f"Fit check not run: {check.get('skipped', 'no result')}"] if check else []
    nprobes = "/".join(str(v) for v in check["nprobes"])
    head = (
        f"Fit check at the real size ({check['vectors']:,} real chunk vectors, nlist {check['nlist']}, "
        f"{check['queries']} held-out documents as queries)"
    )
    lines = []
    for kind in ("ivf-sq8", "ivf-pq"):
        parts = [
            f"{name} " + "/".join(f"{r:.2f}" for r in check["curves"][name][kind])
            for name in ("real", "fitted", "isotropic")
        ]
        lines.append(f"{head}, {kind.upper()} recall@10 at nprobe {nprobes}: " + "; ".join(parts) + ".")
    gaps = check["mean_abs_gap_to_real"]
    lines.append(
        f"Fit check, mean |recall - real recall| over both curves: fitted {gaps['fitted']:.3f}, isotropic "
        f"{gaps['isotropic']:.3f}. Protocol: " + check["protocol"]
    )
    return lines
