"""Shared fixtures. The real embedding model loads once per session (well under a second); everything
else builds tiny indexes in temporary folders."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEED_DIR = ROOT / "seeds"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def embedder():
    from rag.embedding import Embedder

    return Embedder().load()


@pytest.fixture(scope="session")
def seed_text() -> str:
    (path,) = sorted(SEED_DIR.glob("*.txt"))
    return path.read_text(encoding="utf-8")


def make_settings(index_dir: Path, **overrides):
    from rag.settings import Settings

    return Settings(_env_file=None, index_dir=index_dir, **overrides)


@pytest.fixture(scope="session")
def heuristic_pipeline(embedder):
    from rag.pipeline import QAPipeline

    return QAPipeline.load("heuristic", embedder=embedder)


@pytest.fixture(scope="session")
def seed_index_dir(tmp_path_factory, embedder) -> Path:
    """An index of seeds/, built once per session (tests that write must copy it first)."""
    from rag.engine import Engine
    from rag.loaders import load_paths

    folder = tmp_path_factory.mktemp("seed-index")
    engine = Engine(make_settings(folder), embedder)
    engine.reload(create=True)
    engine.upsert(load_paths([SEED_DIR]).documents)
    return folder
