"""Synthetic vectors fitted to real chunk embeddings of our model (all-MiniLM-L6-v2, 384-d, L2-normalised).

`--scale`'s first generator (``benchmark.scale_vectors.Synthetic``: isotropic noise around 2,048 random, well
separated centres) flatters IVF: its neighbours sit in one tight cluster that one inverted list holds whole, and between
them the distances differ only by isotropic noise in 384 dimensions. Real chunk vectors are neither: their
variance is concentrated in a few dozen directions (the mean has norm 0.31, half the variance lies in 38
directions), topics overlap, and a chunk's nearest neighbour is nearly always another chunk of its own document
(the chunker overlaps them by a sentence and puts the title in each).

``Fitted`` is a two-level Gaussian model of that, fitted to the vectors of built indexes (SQuAD, SciFact, seed):

* documents: a document is a "template" drawn from the real documents (its topic, its number of chunks, its
  within-document spread). Its centre is its topic's mean (k-means on the real documents' mean vectors) plus
  Gaussian noise along the topic's own top principal directions (real topics are flatter than the pooled
  covariance) and, for the rest of the topic's variance, along the pooled between-document covariance (full
  384 x 384, within-document part removed);
* chunks: the document's centre plus Gaussian noise with the pooled within-document covariance (full 384 x 384),
  scaled per template document; then L2-normalised.

Queries are one chunk of a fresh document each (their own seed, so never a sibling of a base vector): real
question embeddings would need the model at benchmark time, so the queries are generated from the same
distribution as the chunks, and the check on the real vectors holds out whole documents to match.

The parameters (about 2 MB) live in ``fitted_vectors.npz`` beside this file, so the benchmark needs no index;
``python eval/benchmark/fitted_vectors.py --refit`` fits them again from the cached indexes (fixed seed).
``fitted_check.fit_check`` compares IVF recall curves on the real vectors, on as many fitted vectors and on as
many isotropic ones, at the real corpus size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DIM = 384
CHUNK = 250_000  # as benchmark.scale_vectors.CHUNK: vectors per generated chunk
MODEL_FILE = Path(__file__).with_name("fitted_vectors.npz")
ROOT = Path(__file__).resolve().parents[2]
#: Where the eval harness keeps its built indexes (one per corpus; "-torch" twins would repeat a corpus).
REAL_INDEXES = tuple(ROOT / "eval" / ".cache" / f"index-{name}" for name in ("squad", "scifact", "seed"))
TOPICS = 48  # topics, rank, shrink: the best of 14 settings tried on the fit check's recall curves
RANK = 16
SHRINK = 0.0  # pseudo-documents of the pooled shape in each topic's own directions
SEED = 0
_PRIOR_WITHIN = 2.0  # pseudo-chunks of the pooled within-document variance in each document's estimate
_PRIOR_BETWEEN = 4.0  # pseudo-documents of the pooled between-document variance in each topic's estimate
_ROWS = 50_000  # rows generated at a time inside a chunk (bounds the temporaries)


class NoRealVectors(RuntimeError):
    """No built index with vectors where the fit looks for them."""


# ------------------------------------------------------------------------------------------------ real vectors


@dataclass(frozen=True)
class RealVectors:
    vectors: np.ndarray  # float32 (n, DIM)
    docs: np.ndarray  # int64 (n,): a document number, unique across the indexes read
    sources: list[dict] = field(default_factory=list)  # per index: folder, generation, chunks, documents


def _index_parts(folder: Path) -> tuple[str, list[Path]]:
    """(generation, folders holding vectors.npy + chunks.npz) of an index's live commit: ``gen-N/`` itself in
    the older layout, else the segments its manifest lists. Documents deleted since (tombstones) are kept."""
    current = folder / "CURRENT"
    gens = sorted(p.name for p in folder.glob("gen-*") if p.is_dir())
    gen = current.read_text(encoding="utf-8").strip() if current.is_file() else (gens[-1] if gens else "")
    if not gen or not (folder / gen).is_dir():
        return gen, []
    if (folder / gen / "vectors.npy").is_file():
        return gen, [folder / gen]
    try:
        manifest = json.loads((folder / gen / "manifest.json").read_text(encoding="utf-8"))
        names = [s["name"] for s in manifest.get("segments", [])]
    except (OSError, ValueError, KeyError, TypeError):
        names = []
    parts = [folder / "segments" / n for n in names]
    return gen, [p for p in parts if (p / "vectors.npy").is_file() and (p / "chunks.npz").is_file()]


def load_real(folders: Sequence[Path] = REAL_INDEXES) -> RealVectors:
    """Every chunk vector of the given indexes, with a document number per vector."""
    xs, ds, sources, offset = [], [], [], 0
    for folder in folders:
        gen, parts = _index_parts(Path(folder))
        chunks = documents = 0
        for part in parts:
            x = np.load(part / "vectors.npy", allow_pickle=False)
            with np.load(part / "chunks.npz", allow_pickle=False) as arrays:
                doc = np.asarray(arrays["doc"], dtype=np.int64)
            if x.ndim != 2 or x.shape[1] != DIM or len(x) != len(doc) or not len(x):
                continue
            _, doc = np.unique(doc, return_inverse=True)
            xs.append(np.asarray(x, dtype=np.float32))
            ds.append(doc + offset)
            offset += int(doc.max()) + 1
            chunks += len(x)
            documents += int(doc.max()) + 1
        if chunks:
            sources.append({"index": _shown(Path(folder)), "generation": gen, "chunks": chunks, "documents": documents})
    if not xs:
        looked = ", ".join(_shown(Path(f)) for f in folders)
        raise NoRealVectors(
            f"no real vectors found (looked in {looked}: CURRENT -> gen-N/vectors.npy or the segments it lists); "
            "build the eval indexes first (e.g. make eval, or rag ingest into those folders)"
        )
    return RealVectors(np.concatenate(xs), np.concatenate(ds), sources)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------------------------------ fit


def _factor(cov: np.ndarray) -> tuple[np.ndarray, float]:
    """(F, trace) with F @ F.T = cov / trace (a unit-trace shape), F = eigenvectors x sqrt(eigenvalues)."""
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    values = np.clip(values, max(values.max(), 1e-12) * 1e-6, None)
    trace = float(values.sum())
    return (vectors * np.sqrt(values / trace)).astype(np.float32), trace


def fit(
    vectors: np.ndarray,
    docs: np.ndarray,
    *,
    topics: int = TOPICS,
    rank: int = RANK,
    shrink: float = SHRINK,
    seed: int = SEED,
    sources: list | None = None,
) -> dict[str, np.ndarray]:
    """The model's parameters (see the module docstring) from real unit vectors and their document numbers."""
    import faiss

    x = np.asarray(vectors, dtype=np.float64)
    _, d = np.unique(np.asarray(docs), return_inverse=True)
    n, n_docs = len(x), int(d.max()) + 1
    counts = np.bincount(d, minlength=n_docs)
    means = np.zeros((n_docs, x.shape[1]))
    np.add.at(means, d, x)
    means /= counts[:, None]

    within = x - means[d]
    dof = max(n - n_docs, 1)
    cov_w = within.T @ within / dof
    shape_w, trace_w = _factor(cov_w)
    if n == n_docs:  # no document has two chunks: no within-document spread to measure
        trace_w = 1e-6
    ss_w = np.bincount(d, weights=(within**2).sum(1), minlength=n_docs)
    var_w = (ss_w + _PRIOR_WITHIN * trace_w) / (counts - 1 + _PRIOR_WITHIN)

    k = max(1, min(topics, n_docs // 4))
    kmeans = faiss.Kmeans(x.shape[1], k, niter=25, seed=seed, verbose=False, min_points_per_centroid=1)
    kmeans.train(means.astype(np.float32))
    topic = kmeans.index.search(means.astype(np.float32), 1)[1][:, 0]
    per_topic = np.bincount(topic, minlength=k)
    centres = np.zeros((k, x.shape[1]))
    np.add.at(centres, topic, means)
    centres /= np.maximum(per_topic, 1)[:, None]
    empty = per_topic == 0
    centres[empty] = np.asarray(kmeans.centroids)[empty]

    between = means - centres[topic]
    # A document's mean carries its chunks' noise / chunks: take it out of the between-document covariance.
    cov_b = between.T @ between / max(n_docs - k, 1) - cov_w * float(np.mean(1.0 / counts))
    shape_b, trace_b = _factor(cov_b)
    ss_b = np.bincount(topic, weights=(between**2).sum(1) - var_w / counts, minlength=k)
    var_b = np.clip((ss_b + _PRIOR_BETWEEN * trace_b) / (np.maximum(per_topic - 1, 0) + _PRIOR_BETWEEN), 1e-6, None)
    # Each topic's own principal directions: real topics are flatter than the pooled shape says (participation
    # ratio 43 against 73 for as many Gaussian draws of the pooled covariance, at 32 topics). A document's
    # offset from its topic's mean: the topic's top ``rank`` directions with their variances, plus the pooled
    # shape scaled to the rest of the topic's variance.
    rank = max(0, min(rank, x.shape[1]))
    axes = np.zeros((k, rank, x.shape[1]), dtype=np.float32)
    rest = np.zeros(k)
    for t in range(k):
        r = between[topic == t]
        noise = float(np.mean(var_w[topic == t] / counts[topic == t])) if len(r) else 0.0
        total = max(float((r**2).sum()) / max(len(r) - 1, 1) - noise, 0.0) if len(r) > 1 else var_b[t]
        if len(r) > 2 and rank:
            _, sv, vt = np.linalg.svd(r - r.mean(0), full_matrices=False)
            lam = sv[:rank] ** 2 / (len(r) - 1)
            lam *= min(1.0, total / max(float(lam.sum()), 1e-12)) * len(r) / (len(r) + shrink)
            axes[t, : len(lam)] = vt[:rank] * np.sqrt(lam)[:, None]
            rest[t] = max(total - float(lam.sum()), 0.05 * total)
        else:
            rest[t] = total
    info = {"chunks": n, "documents": n_docs, "topics": k, "seed": seed, "sources": sources or []}
    return {
        "topic_mean": centres.astype(np.float32),
        "topic_scale": np.sqrt(var_b).astype(np.float32),
        "topic_axes": axes,
        "topic_rest": np.sqrt(rest).astype(np.float32),
        "between_shape": shape_b,
        "within_shape": shape_w,
        "doc_topic": topic.astype(np.int32),
        "doc_chunks": counts.astype(np.int32),
        "doc_scale": np.sqrt(var_w).astype(np.float32),
        "mean": x.mean(0).astype(np.float32),
        "info": np.array(json.dumps(info)),
    }


def save(params: dict[str, Any], path: Path = MODEL_FILE) -> Path:
    np.savez_compressed(path, **params)
    return path


# ------------------------------------------------------------------------------------------------ generator


class Fitted:
    """The fitted generator, with ``benchmark.scale_vectors.Synthetic``'s interface: ``chunks(n)`` streams the base set
    (chunk ``i`` from its own seed, whole documents except the chunk's last), ``queries(n)`` one chunk of a
    fresh document each."""

    name = "fitted"

    def __init__(self, params: dict[str, np.ndarray], seed: int = 13, source: str = "") -> None:
        self.p = {k: np.asarray(v) for k, v in params.items()}
        self.seed = seed
        self.source = source
        self.info = json.loads(str(self.p["info"])) if "info" in self.p else {}
        self._mean_chunks = float(self.p["doc_chunks"].mean())

    @classmethod
    def load(cls, path: Path = MODEL_FILE, *, seed: int = 13, refit_from: Sequence[Path] = REAL_INDEXES) -> Fitted:
        """The stored parameters; without them, a fit on the cached indexes (NoRealVectors when there are none)."""
        if Path(path).is_file():
            with np.load(path, allow_pickle=False) as arrays:
                return cls({k: arrays[k] for k in arrays.files}, seed, _shown(Path(path)))
        real = load_real(refit_from)
        return cls(fit(real.vectors, real.docs, sources=real.sources), seed, "fitted at run time")

    def describe(self) -> dict:
        return {
            "generator": self.name,
            "dim": DIM,
            "parameters": self.source,
            "topics": int(len(self.p["topic_mean"])),
            "template_documents": int(len(self.p["doc_chunks"])),
            "mean_chunks_per_document": round(self._mean_chunks, 2),
            "fitted_on": self.info,
            "seed": self.seed,
        }

    def note(self, queries: int) -> str:
        return (
            f"Data: generated from a two-level Gaussian model fitted to {self.info.get('chunks', 0):,} real chunk "
            f"vectors of all-MiniLM-L6-v2 ({self.info.get('documents', 0):,} documents of the cached SQuAD, "
            f"SciFact and seed indexes; eval/benchmark/fitted_vectors.py): documents from "
            f"{len(self.p['topic_mean'])} topics (k-means on document means; each topic's own principal directions "
            "plus the pooled between-document covariance), chunks around their document (full within-document "
            f"covariance, {round(self._mean_chunks, 2)} chunks a document), L2-normalised. {queries} queries: one "
            "chunk of a fresh document each (generated, not real question embeddings); exact top 10 by chunked "
            "brute force."
        )

    def _documents(self, rng: np.random.Generator, n_docs: int) -> tuple[np.ndarray, np.ndarray]:
        """(template numbers, centres) of ``n_docs`` fresh documents."""
        p = self.p
        template = rng.integers(0, len(p["doc_chunks"]), n_docs)
        topic = p["doc_topic"][template]
        centres = rng.standard_normal((n_docs, DIM), dtype=np.float32) @ p["between_shape"].T
        if "topic_axes" in p:
            centres *= p["topic_rest"][topic, None]
            axes = p["topic_axes"]
            z = rng.standard_normal((n_docs, axes.shape[1]), dtype=np.float32)
            order = np.argsort(topic, kind="stable")
            bounds = np.searchsorted(topic[order], np.arange(len(axes) + 1))
            for t in np.flatnonzero(np.diff(bounds)):
                rows = order[bounds[t] : bounds[t + 1]]
                centres[rows] += z[rows] @ axes[t]
        else:
            centres *= p["topic_scale"][topic, None]
        centres += p["topic_mean"][topic]
        return template, centres

    def _chunks_of(
        self, rng: np.random.Generator, template: np.ndarray, centres: np.ndarray, which: np.ndarray
    ) -> np.ndarray:
        """One unit vector per entry of ``which`` (a document's position), built ``_ROWS`` at a time."""
        p = self.p
        out = np.empty((len(which), DIM), dtype=np.float32)
        for s in range(0, len(which), _ROWS):
            w = which[s : s + _ROWS]
            y = rng.standard_normal((len(w), DIM), dtype=np.float32) @ p["within_shape"].T
            y *= p["doc_scale"][template[w], None]
            y += centres[w]
            y /= np.linalg.norm(y, axis=1, keepdims=True)
            out[s : s + len(w)] = y
        return out

    def _points(self, rng: np.random.Generator, n: int) -> np.ndarray:
        sizes = self.p["doc_chunks"]
        n_docs = int(n / self._mean_chunks * 1.25) + 16
        while True:
            template, centres = self._documents(rng, n_docs)
            ends = np.cumsum(sizes[template])
            if ends[-1] >= n:
                break
            n_docs *= 2  # rare: the draw had many small documents; draw again from where the stream is
        used = int(np.searchsorted(ends, n)) + 1
        which = np.repeat(np.arange(used), sizes[template[:used]])[:n]
        return self._chunks_of(rng, template, centres, which)

    def chunks(self, n: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first id, vectors) chunks of the base set; a document's chunks have consecutive ids."""
        for i, start in enumerate(range(0, n, CHUNK)):
            yield start, self._points(np.random.default_rng([self.seed, 1, i]), min(CHUNK, n - start))

    def queries(self, n: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 2])
        template, centres = self._documents(rng, n)
        return self._chunks_of(rng, template, centres, np.arange(n))


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--refit", action="store_true", help=f"fit on the cached indexes and write {MODEL_FILE.name}")
    p.add_argument("--check", action="store_true", help="run the fit check (real vs fitted vs isotropic recall)")
    p.add_argument("--topics", type=int, default=TOPICS)
    args = p.parse_args(argv)
    real = load_real()
    print(f"real vectors: {len(real.vectors):,} chunks, {int(real.docs.max()) + 1:,} documents; {real.sources}")
    if args.refit:
        path = save(fit(real.vectors, real.docs, topics=args.topics, sources=real.sources))
        print(f"wrote {_shown(path)} ({path.stat().st_size / 2**20:.1f} MiB)")
    if args.check:
        from benchmark.fitted_check import check_notes, fit_check

        for line in check_notes(fit_check(real, topics=args.topics)):
            print(line)
    return 0


if __name__ == "__main__":
    import sys

    sys.path[:0] = [str(ROOT / "eval"), str(ROOT)]
    sys.exit(main())
