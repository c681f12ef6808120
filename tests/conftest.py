"""Shared fixtures. The real embedding model loads once per session (well under a second); everything
else builds tiny indexes in temporary folders."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

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


def eval_module(name: str) -> ModuleType:
    """``eval/NAME.py``, which is a script folder, not a package: loaded by path, with eval/ on sys.path for the
    modules it imports from beside it, and registered under NAME (dataclasses look their module up)."""
    if name in sys.modules:
        return sys.modules[name]
    if str(ROOT / "eval") not in sys.path:
        sys.path.append(str(ROOT / "eval"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "eval" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


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


@contextlib.contextmanager
def serve_in_thread(app, ready_timeout: float = 180) -> Iterator[str]:
    """A real uvicorn serving ``app`` on a free port in a thread; yields its base URL once /readyz says 200."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # the OS picks a free port; uvicorn serves on this very socket
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail(f"the service at {base} did not become ready")
            time.sleep(0.2)
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
