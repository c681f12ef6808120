"""Faults: a writer killed with SIGKILL mid-save, and queries racing writes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time

from fastapi.testclient import TestClient

from rag.store import CorpusIndex
from service.main import create_app
from tests.conftest import make_settings

WRITER = textwrap.dedent(
    """
    import sys
    from rag.store import CorpusIndex, IndexSettings
    from rag.types import Document
    from tests.test_store import HashEmbedder

    folder = sys.argv[1]
    fake = HashEmbedder()
    model = {"id": "fake", "checksum": "fake", "dim": fake.dim}
    docs = [Document(id=f"d{i}", title=f"T{i}", text=f"Text number {i}. " * 40) for i in range(60)]
    state_a, _ = CorpusIndex.empty(IndexSettings(), model).apply(docs[:40], embedder=fake)
    state_b, _ = state_a.apply(docs[40:], [f"d{i}" for i in range(10)], embedder=fake)
    state_a.save(folder)
    print("ready", flush=True)
    while True:
        state_b.save(folder)
        state_a.save(folder)
    """
)
STATE_A = {f"d{i}" for i in range(40)}
STATE_B = {f"d{i}" for i in range(10, 60)}


def test_sigkill_during_saves_always_leaves_a_loadable_old_or_new_index(tmp_path):
    rng = random.Random(7)
    folder = tmp_path / "index"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    seen = {"a": 0, "b": 0}
    for _ in range(20):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(folder)], stdout=subprocess.PIPE, env=env, cwd=os.getcwd()
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        index = CorpusIndex.load(folder)  # verifies every file against the manifest's checksums
        docs = set(index.documents)
        assert docs in (STATE_A, STATE_B)
        assert index.dense.size == len(index.chunks) == index.lexical.size
        seen["a" if docs == STATE_A else "b"] += 1
    assert len(list(folder.glob("gen-*"))) >= 1
    print(json.dumps(seen))


def test_queries_racing_writes_see_before_or_after(seed_index_dir, embedder, heuristic_pipeline, tmp_path):
    import shutil

    from rag.engine import Engine

    folder = tmp_path / "index"
    shutil.copytree(seed_index_dir, folder)
    settings = make_settings(folder, reader="heuristic", allow_open_writes=True, max_queue=1000)
    engine = Engine(settings, embedder, heuristic_pipeline)
    engine.reload()
    # One TestClient context = one event loop for every thread's requests, as under uvicorn.
    client = TestClient(create_app(settings, engine=engine)).__enter__()
    extra = "Emperor penguins breed in Antarctica during the winter. " * 20
    texts = {"penguins": extra}
    stop = threading.Event()
    problems: list[str] = []
    counts: set[int] = set()

    def writer() -> None:
        while not stop.is_set():
            r = client.post("/documents", json={"documents": [{"id": "penguins", "title": "P", "text": extra}]})
            if r.status_code != 200:
                problems.append(f"write {r.status_code}")
            r = client.delete("/documents/penguins")
            if r.status_code != 200:
                problems.append(f"delete {r.status_code}")

    def reader() -> None:
        while not stop.is_set():
            r = client.get("/search", params={"q": "Where do emperor penguins breed?", "k": 5})
            if r.status_code != 200:
                problems.append(f"search {r.status_code}")
                continue
            for p in r.json()["passages"]:
                text = texts.get(p["document_id"])
                if text is not None and text[p["document_offset"]["start"] : p["document_offset"]["end"]] != p["text"]:
                    problems.append("torn passage")
            n = client.get("/documents").json()["count"]
            counts.add(n)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(6)
    stop.set()
    for t in threads:
        t.join()
    client.__exit__(None, None, None)
    assert problems == []
    assert counts <= {1, 2} and counts
