"""rag/onnx.py: the one-off ONNX exports, from an EMPTY cache as on a new machine, checked against torch.

The real reader and embedder are exported once each (about 10 s apiece); the export check's failure and the
quiet quantiser use a tiny random BERT, which exports in well under a second."""

from __future__ import annotations

import logging
import warnings
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


def _tracer_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    import torch

    return [str(w.message) for w in caught if issubclass(w.category, torch.jit.TracerWarning)]


def test_reader_exports_into_an_empty_cache_and_agrees_with_torch(empty_cache, caplog):
    from rag.reader.model import DEFAULT_READER_DIR, SpanReader

    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        onnx.export_model("reader", DEFAULT_READER_DIR, int8=False)  # what the child runs (rag.onnx.ensure)
    assert [p.name for p in empty_cache.iterdir()] == [f"reader-{onnx.weights_key(reader_weights())}.onnx"]
    assert _stages(caplog) == ["exporting the reader to ONNX and checking it against torch"]
    assert _tracer_warnings(caught) == []

    reader = SpanReader.load(backend="onnx")  # the cached file: no export, no torch model
    assert reader.model is None
    enc = reader.tokenizer([QUESTION] * 2, PASSAGES, padding=True, return_tensors="np")
    batch = {name: enc[name] for name in onnx.INPUTS}
    torch_reader = SpanReader.load(backend="torch")
    real = batch["attention_mask"].astype(bool)
    for got, want in zip(reader.logits(batch), torch_reader.logits(batch), strict=True):
        assert np.abs(got[real] - want[real]).max() < onnx.TOLERANCE


def test_embedder_exports_into_an_empty_cache_and_agrees_with_torch(empty_cache, caplog):
    from rag.embedding import Embedder, model_dir

    caplog.set_level(logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        onnx.export_model("embedder", model_dir(), int8=False)
    (exported,) = empty_cache.iterdir()
    assert exported.name.startswith("embedder-") and exported.suffix == ".onnx"
    assert _stages(caplog) == ["exporting the embedder to ONNX and checking it against torch"]
    assert _tracer_warnings(caught) == []

    embedder = Embedder(backend="onnx").load()
    texts = [QUESTION, *PASSAGES]
    got = embedder.encode(texts)
    want = embedder.model.encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    assert np.abs(got - want).max() < 1e-4


def test_serving_from_an_empty_cache_exports_in_a_child_and_never_imports_torch(tmp_path):
    """A first start on a new machine: both int8 files are made by child processes; the process that loads
    the pipeline and answers has neither torch nor transformers imported."""
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


def tiny_bert():
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=4000,  # the trace input has ids up to 3231
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    return BertModel(config).eval()


def test_an_export_that_does_not_generalise_is_refused_and_not_written(empty_cache, monkeypatch):
    import torch

    traceable = onnx._traceable

    def frozen_length(bert, head):
        """The failure the check exists for: Python reads a shape, so the trace keeps the trace input's length."""
        inner = traceable(bert, head)

        class Frozen(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, input_ids, attention_mask, token_type_ids):
                seq = int(input_ids.shape[1])  # 8 in the trace, for ever after
                return self.inner(input_ids, attention_mask, token_type_ids)[:, :seq]

        return Frozen().eval()

    monkeypatch.setattr(onnx, "_traceable", frozen_length)
    target = empty_cache / "tiny.onnx"
    refused = r"tiny.onnx \(not written\) differs from torch on a 3x40 batch: hidden states of shape \(3, 8, 32\)"
    with pytest.raises(ModelError, match=refused):
        onnx.export(tiny_bert(), target, qa=False)
    assert list(empty_cache.iterdir()) == []  # neither the file nor its temporary


def test_an_export_with_wrong_numbers_is_refused(tmp_path, monkeypatch):
    model = tiny_bert()
    path = onnx.export(model, tmp_path / "tiny.onnx", qa=False)
    assert onnx.check(path, model, qa=False) < onnx.TOLERANCE
    model.encoder.layer[-1].output.LayerNorm.bias.data += 0.01  # torch now computes something else than the graph
    with pytest.raises(ModelError, match=r"max abs difference in the hidden states .* > 0.001"):
        onnx.check(path, model, qa=False)


def test_quantising_says_one_line_and_leaves_logging_as_it_was(tmp_path, caplog):
    source = onnx.export(tiny_bert(), tmp_path / "tiny.onnx", qa=False)
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
    path = onnx.export(tiny_bert(), tmp_path / "tiny.onnx", qa=False)
    options = onnx.session(path, 1).get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
