"""The Ray ingest (rag/distributed/) against the local path, on a local Ray with 2 CPUs and a small corpus.

Skipped when Ray is not installed (``pip install '.[ray]'``). One Ray instance serves the whole module; the
suite takes well under a minute on 2 cores (most of it Ray's start-up and the actors' model loads).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SEED_DIR, make_settings
from tests.sample_files import pdf_bytes

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install '.[ray]' to run the distributed tests")

ARTICLES = {
    "harbour.txt": "Harbour expansion approved\n\nThe council approved the harbour expansion on Monday. "
    "Work starts in May and should take two years.\n\nThe new quay adds 400 metres of berth. "
    "Critics said the cost, 80 million euros, was too high.",
    "rivers.md": "# Rivers of the north\n\nThe Tana river forms part of the border. Salmon fishing there is "
    "regulated by both countries. Its length is about 360 kilometres.",
}
RECORDS = [
    {"id": "rec-1", "title": "Solar output", "text": "Solar output rose by a third last year. " * 30},
    {"id": "rec-2", "title": "Rail strike", "text": "Train drivers walked out on Tuesday. Talks resume Friday."},
    {"id": "bad", "title": "no text"},
]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, text in ARTICLES.items():
        (folder / name).write_text(text, encoding="utf-8")
    (folder / "records.jsonl").write_text("\n".join(json.dumps(r) for r in RECORDS), encoding="utf-8")
    shutil.copy(next(SEED_DIR.glob("*.txt")), folder / "seed.txt")
    return folder


def local_index(corpus: Path, folder: Path, embedder):
    from rag.engine import Engine
    from rag.loaders import load_paths

    engine = Engine(make_settings(folder), embedder)
    engine.reload(create=True)
    engine.upsert(load_paths([corpus]).documents)
    return engine.snapshot


def ray_ingest(corpus: Path, folder: Path, embedder, workers: int = 1, **kwargs):
    """One actor unless asked: on 2 busy cores, two actors loading the model at once double the wait."""
    from rag.distributed import RayOptions, ingest
    from rag.engine import model_record

    return ingest(
        [corpus],
        folder,
        settings=make_settings(folder).index_settings(),
        model=model_record(embedder),
        options=RayOptions(workers=workers, batch_docs=2, embed_backend=embedder.backend),
        **kwargs,
    )


def test_ray_and_local_give_the_same_index(local_ray, corpus, tmp_path, embedder):
    from rag.store import CorpusIndex

    expected = local_index(corpus, tmp_path / "local", embedder)
    report, stats = ray_ingest(corpus, tmp_path / "ray", embedder, workers=2)
    got = CorpusIndex.load(tmp_path / "ray")

    assert 1 <= len(stats.actor_model_load) <= 2 < stats.parts  # at most one model load per actor, not per batch
    assert [r[0] for r in report.skipped] == [f"{corpus / 'records.jsonl'} line 3"]
    assert list(got.documents) == list(expected.documents)
    assert got.checksums == expected.checksums
    assert [(c.key, c.chunk_id, c.start, c.end) for c in got.chunks] == [
        (c.key, c.chunk_id, c.start, c.end) for c in expected.chunks
    ]
    assert len(got.chunks) > len(got.documents)  # the long record and the seed split into several chunks
    # int8 ONNX quantises activations per batch, so batch composition moves vectors slightly (cosine >= 0.99)
    cosine = np.sum(got.vectors * expected.vectors, axis=1)
    assert cosine.min() > 0.995, cosine.min()
    assert got.manifest()["counts"] == expected.manifest()["counts"]


def test_ray_vectors_equal_local_within_float_tolerance_with_fp32(local_ray, corpus, tmp_path):
    from rag.embedding import Embedder
    from rag.store import CorpusIndex

    fp32 = Embedder(backend="onnx").load()
    expected = local_index(corpus, tmp_path / "local", fp32)
    ray_ingest(corpus, tmp_path / "ray", fp32)
    got = CorpusIndex.load(tmp_path / "ray")
    assert [c.key for c in got.chunks] == [c.key for c in expected.chunks]
    np.testing.assert_allclose(got.vectors, expected.vectors, atol=1e-5)


def test_an_interrupted_ray_ingest_resumes_with_only_the_missing_work(local_ray, corpus, tmp_path, embedder):
    from rag.distributed import STAGING
    from rag.store import CorpusIndex, index_exists

    folder = tmp_path / "ray"

    def interrupt(parts: int) -> None:
        raise KeyboardInterrupt  # as if the driver died after staging its first batch

    with pytest.raises(KeyboardInterrupt):
        ray_ingest(corpus, folder, embedder, on_part=interrupt)
    assert not index_exists(folder)
    staged = list((folder / STAGING).glob("part-*.npz"))
    assert len(staged) == 1

    report, stats = ray_ingest(corpus, folder, embedder)
    total = 5  # seed, two articles, two good records
    assert stats.documents_resumed == 2  # batch_docs=2: the first batch was kept
    assert stats.documents_staged == total - 2
    assert len(report.added) == total
    assert not (folder / STAGING).exists()
    assert len(CorpusIndex.load(folder).documents) == total

    # A re-run with nothing changed embeds nothing; a changed file re-embeds only its document.
    report, stats = ray_ingest(corpus, folder, embedder)
    assert (stats.documents_staged, report.chunks_embedded, len(report.unchanged)) == (0, 0, total)
    (corpus / "rivers.md").write_text(ARTICLES["rivers.md"] + " It freezes in winter.", encoding="utf-8")
    report, stats = ray_ingest(corpus, folder, embedder)
    assert report.replaced == ("rivers",) and stats.documents_staged == 1


def test_a_ray_rebuild_is_built_beside_the_live_index_and_swapped_in_at_the_end(local_ray, corpus, tmp_path, embedder):
    from rag.store import CorpusIndex

    folder = tmp_path / "ray"
    ray_ingest(corpus, folder, embedder)
    before = CorpusIndex.load(folder)
    (corpus / "rivers.md").write_text("The river Vantaa is 101 km long.", encoding="utf-8")

    def interrupt(parts: int) -> None:
        raise KeyboardInterrupt  # the rebuild dies after staging its first batch

    with pytest.raises(KeyboardInterrupt):
        ray_ingest(corpus, folder, embedder, rebuild=True, on_part=interrupt)
    live = CorpusIndex.load(folder)  # the old index is untouched and still loads
    assert live.checksums == before.checksums and live.generation == before.generation

    report, _ = ray_ingest(corpus, folder, embedder, rebuild=True)
    rebuilt = CorpusIndex.load(folder)
    assert "101 km" in rebuilt.get("rivers").text and len(report.added) == len(before.documents)
    assert rebuilt.generation > before.generation  # serving processes move to the newer commit
    assert not list(tmp_path.glob(".ray.*"))  # nothing left beside it


def test_ray_writes_a_sharded_index_the_engine_serves(local_ray, corpus, tmp_path, embedder):
    from rag.shards import ShardedIndex, read_manifest
    from rag.store import CorpusIndex

    expected = local_index(corpus, tmp_path / "local", embedder)
    report, _ = ray_ingest(corpus, tmp_path / "sharded", embedder, shards=3)
    manifest = read_manifest(tmp_path / "sharded")
    assert [s["name"] for s in manifest["shards"]] == ["shard-000", "shard-001", "shard-002"]
    assert sum(s["documents"] for s in manifest["shards"]) == len(expected.documents) == len(report.added)

    got = ShardedIndex.load(tmp_path / "sharded")
    assert set(got.documents) == set(expected.documents)
    spans = sorted((c.chunk_id, c.start, c.end) for c in got.chunks)
    assert spans == sorted((c.chunk_id, c.start, c.end) for c in expected.chunks)
    for shard in manifest["shards"]:  # each shard is an ordinary index as well
        assert CorpusIndex.load(tmp_path / "sharded" / shard["name"]).documents


def test_ray_takes_the_local_ids_and_refuses_nothing_usable_as_the_local_path_does(local_ray, tmp_path, embedder):
    from rag.distributed import RayOptions
    from rag.distributed.driver import _load_documents
    from rag.errors import LoadError
    from rag.loaders import DEFAULT_MAX_BYTES, load_paths
    from rag.store import CorpusIndex

    tree = tmp_path / "docs"
    files = {  # one file name in two folders, and two stems in one folder (which keep their suffix)
        "guide/index.md": "# Guide\n\nInstall the package first.",
        "api/index.md": "# API\n\nEvery route returns JSON.",
        "api/index.txt": "API notes\n\nThe limit is 50 requests a second.",
    }
    for name, text in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text, encoding="utf-8")
    (tree / "manual.pdf").write_bytes(pdf_bytes([["Manual"], ["Page two says hello."]]))  # bytes, never text
    expected = load_paths([tree]).documents
    index = tmp_path / "index"
    report, _ = ray_ingest(tree, index, embedder)
    got = CorpusIndex.load(index)
    ids = ["api/index.md", "api/index.txt", "guide/index", "manual"]
    assert sorted(got.documents) == sorted(d.id for d in expected) == ids
    assert got.checksums == {d.id: d.checksum for d in expected} and report.skipped == ()
    manual = got.documents["manual"]
    assert manual.page_at(manual.text.index("Page two")) == 2
    # Two folders given, each with an index.md: the second is refused with the local path's message.
    folders = [tree / "guide", tree / "api"]
    documents, skipped, _ = _load_documents(folders, RayOptions(workers=1), DEFAULT_MAX_BYTES)
    local = load_paths(folders)
    assert [d.id for d in documents] == [d.id for d in local.documents] == ["index.md", "index.txt"]
    assert skipped == local.skipped and str(tree / "guide" / "index.md") in skipped[0][1]

    # Nothing usable: refused before --rebuild removes the index or --sync empties it; no new index either.
    before = sorted(p.relative_to(index) for p in index.rglob("*"))
    (tmp_path / "only.xlsx").write_bytes(b"PK\x03\x04")
    for flags in ({"rebuild": True}, {"sync": True}):
        with pytest.raises(LoadError) as info:
            ray_ingest(tmp_path / "only.xlsx", index, embedder, **flags)
        message = str(info.value)
        assert f"no usable documents found in {tmp_path / 'only.xlsx'} (1 skipped); nothing was written" in message
        assert "unsupported file type .xlsx" in message
    assert sorted(p.relative_to(index) for p in index.rglob("*")) == before
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoadError, match=r"\(0 skipped\); nothing was written"):
        ray_ingest(tmp_path / "empty", tmp_path / "new", embedder)
    assert not (tmp_path / "new").exists()


def test_the_local_path_never_imports_ray():
    import subprocess
    import sys

    code = (
        "import sys, cli, rag.engine, rag.distributed, rag.shards, service.main; "
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
