"""rag/onnx.py, rag/onnx_graph.py: the ONNX graphs built from the weights without torch, from an EMPTY cache as
on a new machine, checked against torch.

The real reader and embedder are built once each (about 2 s apiece); the graph against torch, the check's
failure and the quiet quantiser also use a tiny random BERT."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag import onnx
from rag.errors import ModelError

QUESTION = "When was the bridge opened?"
PASSAGES = [
    "The bridge was opened in 1932 after eight years of work. It carries trains, cars and people on foot.",
    "Nobody remembers who painted the first sign.",
]


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """rag.onnx.cache_dir() inside tmp_path: nothing exported by an earlier run is there."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert not onnx.cache_dir().exists()
    return onnx.cache_dir()


def _stages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage().split(",")[0] for r in caplog.records if r.name == "rag.onnx"]


def test_reader_builds_into_an_empty_cache_without_torch_and_agrees_with_torch(empty_cache, caplog):
    from rag.reader.model import DEFAULT_READER_DIR, SpanReader

    caplog.set_level(logging.INFO)
    path = onnx.ensure("reader", DEFAULT_READER_DIR, int8=False)
    assert [p.name for p in empty_cache.iterdir()] == [path.name]
    assert path.name.startswith(f"reader-{onnx.weights_key(reader_weights())}")
    assert _stages(caplog) == ["building the reader's ONNX graph from its weights"]

    reader = SpanReader.load(backend="onnx")  # the cached file: no build, no torch model
    assert reader.model is None
    enc = reader.tokenizer([QUESTION] * 2, PASSAGES, padding=True, return_tensors="np")
    batch = {name: enc[name] for name in onnx.INPUTS}
    torch_reader = SpanReader.load(backend="torch")
    real = batch["attention_mask"].astype(bool)
    for got, want in zip(reader.logits(batch), torch_reader.logits(batch), strict=True):
        assert np.abs(got[real] - want[real]).max() < onnx.TOLERANCE


def test_embedder_builds_into_an_empty_cache_and_agrees_with_torch(empty_cache, caplog):
    from rag.embedding import Embedder, model_dir

    caplog.set_level(logging.INFO)
    onnx.ensure("embedder", model_dir(), int8=False)
    (built,) = empty_cache.iterdir()
    assert built.name.startswith("embedder-") and built.suffix == ".onnx"
    assert _stages(caplog) == ["building the embedder's ONNX graph from its weights"]

    embedder = Embedder(backend="onnx").load()
    texts = [QUESTION, *PASSAGES]
    got = embedder.encode(texts)
    want = embedder.model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    assert np.abs(got - want).max() < 1e-4


@pytest.mark.parametrize("kind", onnx.KINDS)
def test_the_shipped_reference_outputs_are_torchs_on_the_shipped_weights(kind):
    """The files every build is checked against cannot go stale: torch recomputes them here."""
    from rag.embedding import model_dir
    from rag.reader.model import DEFAULT_READER_DIR

    folder = DEFAULT_READER_DIR if kind == "reader" else model_dir()
    shipped = onnx.reference_for(kind, folder)
    assert shipped is not None
    fresh = onnx.reference_outputs(kind, folder)
    assert shipped["weights_sha256"] == fresh["weights_sha256"]
    for a, b in zip(shipped["batches"], fresh["batches"], strict=True):
        for row_a, row_b in zip(a, b, strict=True):
            assert np.abs(np.asarray(row_a) - np.asarray(row_b)).max() < 1e-4


def test_serving_from_an_empty_cache_builds_its_graphs_and_never_imports_torch(tmp_path):
    """A first start on a new machine: the process that builds both int8 files, loads the pipeline and answers
    has neither torch nor transformers imported."""
    import json
    import os
    import subprocess
    import sys

    script = (
        "import json, sys\n"
        "from rag.pipeline import QAPipeline\n"
        "p = QAPipeline.load('trained')\n"
        f"r = p.reader.read({QUESTION!r}, {PASSAGES!r})\n"
        "c = r[0].candidates[0]\n"
        f"answer = {PASSAGES[0]!r}[c.start:c.end]\n"
        "dim = int(p.embedder.encode_query('x').shape[1])\n"
        "print(json.dumps({'answer': answer, 'dim': dim,"
        " 'torch': 'torch' in sys.modules, 'transformers': 'transformers' in sys.modules}))\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got == {"answer": "1932", "dim": 384, "torch": False, "transformers": False}
    names = sorted(
        p.name.split("-")[0] + ("-int8" if "int8" in p.name else "") for p in (tmp_path / "rag-onnx").iterdir()
    )
    assert names == ["embedder", "embedder-int8", "reader", "reader-int8"]


def tiny_bert(tmp_path: Path, *, qa: bool = False) -> Path:
    """A tiny random BERT saved as a model folder (weights, config), as training or a package would leave it."""
    from safetensors.torch import save_file
    from transformers import BertConfig, BertForQuestionAnswering, BertModel

    config = BertConfig(
        vocab_size=4000,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    model = (BertForQuestionAnswering if qa else BertModel)(config).eval()
    folder = tmp_path / ("tiny-reader" if qa else "tiny")
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    config.to_json_file(str(folder / "config.json"))
    return folder


def torch_reference(kind: str, folder: Path) -> dict:
    """rag.onnx.reference_outputs for a plain transformers folder (the tiny models are not sentence-transformers)."""
    import torch
    from transformers import BertForQuestionAnswering, BertModel

    qa = kind == "reader"
    model = (BertForQuestionAnswering if qa else BertModel).from_pretrained(str(folder)).eval()
    batches = []
    for batch in onnx.check_batches(4000):
        with torch.inference_mode():
            out = model(**{name: torch.from_numpy(batch[name]) for name in onnx.INPUTS})
        got = [out.start_logits, out.end_logits] if qa else [out.last_hidden_state]
        batches.append(onnx.summarise([t.numpy() for t in got], batch, qa=qa))
    return {"kind": kind, "vocab_size": 4000, "weights_sha256": "", "batches": batches}


@pytest.mark.parametrize("kind", onnx.KINDS)
def test_a_built_graph_computes_what_torch_computes(tmp_path, kind):
    folder = tiny_bert(tmp_path, qa=kind == "reader")
    path = onnx.build(kind, folder, tmp_path / "tiny.onnx")  # no reference file: built unchecked, warned
    assert onnx.check(path, torch_reference(kind, folder)) < 1e-5


def test_a_graph_that_disagrees_with_torch_is_refused_and_not_written(tmp_path, empty_cache):
    from rag.reader.model import DEFAULT_READER_DIR

    folder = tmp_path / "reader"
    shutil.copytree(DEFAULT_READER_DIR, folder)
    reference = json.loads((folder / onnx.REFERENCE).read_text())
    reference["batches"][1][0][3] += 0.01  # torch said something else for the 3x40 batch
    (folder / onnx.REFERENCE).write_text(json.dumps(reference))
    with pytest.raises(ModelError, match=r"\(not written\) differs from torch on a 3x40 batch: max abs difference"):
        onnx.ensure("reader", folder, int8=False)
    assert list(empty_cache.iterdir()) == []  # neither the file nor its temporary

    reference["weights_sha256"] = "0" * 64
    (folder / onnx.REFERENCE).write_text(json.dumps(reference))
    with pytest.raises(ModelError, match="computed from other weights"):
        onnx.ensure("reader", folder, int8=False)


def test_quantising_says_one_line_and_leaves_logging_as_it_was(tmp_path, caplog):
    source = onnx.build("embedder", tiny_bert(tmp_path), tmp_path / "tiny.onnx")
    caplog.clear()  # (the build's warning: no reference outputs for the tiny model)
    caplog.set_level(logging.DEBUG)  # onnxruntime.quantization's INFO and WARNING records would pass this
    onnx.quantize_int8(source, tmp_path / "tiny-int8.onnx")
    assert (tmp_path / "tiny-int8.onnx").is_file()
    assert [r.getMessage().split(",")[0] for r in caplog.records] == ["quantising tiny.onnx to int8"]

    # With no handler on the root logger, onnxruntime's logging.warning() would install one for good, and
    # every library's DEBUG records (bm25s sets its logger to DEBUG) would print from then on.
    root = logging.getLogger()
    saved, root.handlers = root.handlers, []
    try:
        onnx.quantize_int8(source, tmp_path / "again-int8.onnx")
        left = list(root.handlers)
    finally:
        root.handlers = saved
    assert left == []


def reader_weights() -> Path:
    from rag.reader.model import DEFAULT_READER_DIR

    return DEFAULT_READER_DIR / "model.safetensors"


def test_sessions_do_not_spin_between_runs(tmp_path):
    """The embedder's and the reader's sessions run one after the other in each request: spin-waiting threads
    of the first took the cores from the second (rag.onnx.session)."""
    path = onnx.build("embedder", tiny_bert(tmp_path), tmp_path / "tiny.onnx")
    options = onnx.session(path, 1).get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
