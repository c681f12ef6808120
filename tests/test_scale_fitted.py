"""The --scale generator fitted to real embeddings (eval/benchmark/fitted_vectors.py), on a small random fixture:
no cached index needed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))

from benchmark import fitted_vectors as fv  # noqa: E402
from benchmark.scale import kept_notes, kept_runs  # noqa: E402

DIM = fv.DIM


@pytest.fixture(scope="module")
def real() -> tuple[np.ndarray, np.ndarray]:
    """Anisotropic, clustered unit vectors in documents of 1-4 chunks: a dominant mean direction, a decaying
    spectrum, 12 topics, chunks close to their document."""
    rng = np.random.default_rng(5)
    basis = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0]
    spectrum = 1.0 / np.arange(1, DIM + 1) ** 0.8
    mean = 2.0 * basis[:, 0]
    topics = mean + rng.standard_normal((12, DIM)) * np.sqrt(spectrum) @ basis.T * 0.6
    sizes = rng.integers(1, 5, 700)
    docs = np.repeat(np.arange(len(sizes)), sizes)
    centres = topics[rng.integers(0, len(topics), len(sizes))]
    centres += rng.standard_normal((len(sizes), DIM)) * np.sqrt(spectrum) @ basis.T * 0.4
    x = centres[docs] + rng.standard_normal((len(docs), DIM)) * np.sqrt(spectrum) @ basis.T * 0.2
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), docs


@pytest.fixture(scope="module")
def model(real) -> fv.Fitted:
    x, docs = real
    return fv.Fitted(fv.fit(x, docs, topics=12, seed=0), seed=3)


def test_deterministic_unit_norm_streamed(model: fv.Fitted, monkeypatch) -> None:
    monkeypatch.setattr(fv, "CHUNK", 1_000)
    a = list(model.chunks(2_500))
    b = list(model.chunks(2_500))
    assert [s for s, _ in a] == [0, 1_000, 2_000] and [len(c) for _, c in a] == [1_000, 1_000, 500]
    for (_, x), (_, y) in zip(a, b, strict=True):
        assert x.dtype == np.float32 and np.array_equal(x, y)
        assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    # A chunk depends on its own seed only: the first chunks of a larger set are the same vectors.
    assert np.array_equal(next(iter(model.chunks(5_000)))[1], a[0][1])
    q = model.queries(50)
    assert np.array_equal(q, model.queries(50)) and np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)
    assert not np.array_equal(q, a[0][1][:50])
    assert not np.array_equal(next(iter(fv.Fitted(model.p, seed=4).chunks(1_000)))[1], a[0][1])


def test_reproduces_mean_and_principal_variance(real, model: fv.Fitted, monkeypatch) -> None:
    x, _ = real
    monkeypatch.setattr(fv, "CHUNK", 10_000)
    y = np.concatenate([c for _, c in model.chunks(10_000)])
    mx, my = x.mean(0), y.mean(0)
    assert float(mx @ my / np.linalg.norm(mx) / np.linalg.norm(my)) > 0.98
    assert abs(np.linalg.norm(my) / np.linalg.norm(mx) - 1) < 0.1
    ex, vx = np.linalg.eigh(np.cov(x.T))
    ey, vy = np.linalg.eigh(np.cov(y.T))
    assert abs(ey[-1] / ex[-1] - 1) < 0.3  # top principal variance
    assert abs(ey[-10:].sum() / ex[-10:].sum() - 1) < 0.25
    assert abs(ey.sum() / ex.sum() - 1) < 0.15  # total variance
    assert abs(float(vx[:, -1] @ vy[:, -1])) > 0.9  # top principal direction
    # Chunks of one document stay close, as in the fixture (a query's nearest neighbour is often a sibling).
    sims = (y[:-1] * y[1:]).sum(1)
    assert np.median(sims) > np.median((y[:-1] * y[np.random.default_rng(0).permutation(len(y))[:-1]]).sum(1))


def test_real_vectors_missing_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(fv.NoRealVectors, match="no real vectors found"):
        fv.load_real([tmp_path / "index-none"])
    with pytest.raises(fv.NoRealVectors):
        fv.Fitted.load(tmp_path / "absent.npz", refit_from=[tmp_path])


def test_load_real_reads_the_live_segments(tmp_path, real) -> None:
    x, docs = real
    folder = tmp_path / "index-x"
    (folder / "gen-000002").mkdir(parents=True)
    (folder / "CURRENT").write_text("gen-000002\n")
    (folder / "gen-000002" / "manifest.json").write_text('{"segments": [{"name": "seg-a"}, {"name": "seg-b"}]}')
    for name, rows in (("seg-a", slice(0, 100)), ("seg-b", slice(100, 250)), ("seg-old", slice(0, 10))):
        (folder / "segments" / name).mkdir(parents=True)
        np.save(folder / "segments" / name / "vectors.npy", x[rows])
        np.savez(folder / "segments" / name / "chunks.npz", doc=docs[rows] - docs[rows][0])
    loaded = fv.load_real([folder])
    assert np.array_equal(loaded.vectors, x[:250])
    assert loaded.sources[0]["chunks"] == 250 and loaded.sources[0]["generation"] == "gen-000002"
    # Document numbers are unique across segments (a document split by the segment boundary counts twice).
    assert loaded.docs.max() + 1 == len(np.unique(docs[:100])) + len(np.unique(docs[100:250]))


def test_kept_runs_carry_the_other_generator() -> None:
    iso = {"date": "2026-11-28 03:04", "seconds": 2149.5, "data": {"centres": 2048}, "best": [], "points": []}
    iso["best"] = [
        {
            "vectors": 10_000_000,
            "kind": "ivf-sq8",
            "params": {"nlist": 4096, "nprobe": 4},
            "build_s": 786.5,
            "index_bytes": 3_927_439_341,
            "p50_ms": 0.57,
            "p95_ms": 0.86,
            "recall_at_10": 0.9525,
        }
    ]
    kept = kept_runs(iso, "fitted")
    assert list(kept) == ["isotropic"] and kept["isotropic"]["best"] == iso["best"]
    fitted = {"date": "2026-11-30", "data": {"generator": "fitted"}, "best": [], "other_data": kept}
    assert list(kept_runs(fitted, "fitted")) == ["isotropic"]  # carried on by the next fitted run
    assert set(kept_runs(fitted, "isotropic")) == {"fitted"}  # an isotropic run keeps the fitted one instead
    assert kept_runs(None, "fitted") == {}
    (line,) = kept_notes(kept)
    assert "10M ivf-sq8 nprobe 4: recall 0.953, p95 0.86 ms, 3.66 GiB, built 13.1 min" in line
