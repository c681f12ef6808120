"""ONNX Runtime paths for the two model passes (embedding and reading), exported from our own weights.

transformers' BERT builds its attention mask with shape-dependent Python that the ONNX tracer freezes, so the
export goes through a plain re-statement of the same BERT forward pass (same weights, same maths). The exported
graph is checked against the transformers model in torch on inputs of other shapes (batch sizes, lengths,
padding) before it is used. Exports are cached on disk by the weights' checksum, so they happen once per machine.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rag.checksums import sha256_file
from rag.errors import ModelError

log = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: Part of the cached int8 file's name: a new quantisation recipe never reuses an old file.
INT8_RECIPE = "pc-noffndown-v2"
#: Largest absolute difference allowed between the fp32 graph and torch (logits, hidden states); seen: ~1e-5.
TOLERANCE = 1e-3
#: (real lengths of the rows) of the check batches: other batch sizes and lengths than the trace's (2 x 8),
#: rows padded to the longest, up to the 256 tokens that the reader and the embedder feed.
CHECK_LENGTHS = ((5,), (40, 13, 27), (256, 130))


def cache_dir() -> Path:
    from rag.settings import onnx_cache_dir  # (only the settings module reads the environment)

    return onnx_cache_dir()


def _traceable(bert: Any, head: Any | None):
    import torch
    from torch import nn

    class TraceableBert(nn.Module):
        """BERT encoder (+ optional span head) without data-dependent Python, for tracing."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = bert
            self.head = head
            self.heads = bert.config.num_attention_heads
            self.eps = bert.config.layer_norm_eps

        def forward(self, input_ids, attention_mask, token_type_ids):
            emb = self.bert.embeddings
            seq = input_ids.shape[1]
            positions = torch.arange(seq, device=input_ids.device).unsqueeze(0)
            x = (
                emb.word_embeddings(input_ids)
                + emb.position_embeddings(positions)
                + emb.token_type_embeddings(token_type_ids)
            )
            x = emb.LayerNorm(x)
            bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
            batch, hidden = x.shape[0], x.shape[2]
            dh = hidden // self.heads
            for layer in self.bert.encoder.layer:
                att = layer.attention.self

                def split(t):
                    return t.view(batch, seq, self.heads, dh).transpose(1, 2)

                q, k, v = split(att.query(x)), split(att.key(x)), split(att.value(x))
                scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh) + bias
                ctx = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(batch, seq, hidden)
                x = layer.attention.output.LayerNorm(layer.attention.output.dense(ctx) + x)
                h = torch.nn.functional.gelu(layer.intermediate.dense(x))
                x = layer.output.LayerNorm(layer.output.dense(h) + x)
            if self.head is None:
                return x
            logits = self.head(x)
            return logits[..., 0], logits[..., 1]

    return TraceableBert().eval()


def export(model: Any, path: Path, *, qa: bool) -> Path:
    """Export a transformers BERT (``qa``: BertForQuestionAnswering) to ONNX fp32 at ``path``.

    The file appears only once the graph agrees with ``model`` in torch on inputs of other shapes than the
    trace's; otherwise ModelError names the difference and nothing is written."""
    import torch

    what = "reader" if qa else "embedder"
    log.info("exporting the %s to ONNX and checking it against torch, once per machine (about 10 s): %s", what, path)
    bert = model.bert if qa else model
    module = _traceable(bert, model.qa_outputs if qa else None)
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102, 0, 0], [101, 2178, 102, 2307, 2003, 2009, 2182, 102]])
    mask = (ids != 0).long()
    types = torch.zeros_like(ids)
    outputs = ["start_logits", "end_logits"] if qa else ["last_hidden_state"]
    axes = {name: {0: "batch", 1: "seq"} for name in (*INPUTS, *outputs)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        # The tracer warns that the attention scale 1/sqrt(hidden / heads) becomes a Python float: the weights fix
        # the hidden size, so that constant is right, and the check below is what proves the graph general.
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(
                module,
                (ids, mask, types),
                str(tmp),
                input_names=list(INPUTS),
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        check(tmp, model, qa=qa, label=f"{path} (not written)")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_batches(vocab_size: int, *, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Batches shaped unlike the trace input: [CLS] ... [SEP] ... [SEP] rows, two segments, padded with 0."""
    rng = np.random.default_rng(seed)
    batches = []
    for lengths in CHECK_LENGTHS:
        width = max(lengths)
        ids = np.zeros((len(lengths), width), dtype=np.int64)
        types = np.zeros_like(ids)
        for row, n in enumerate(lengths):
            ids[row, :n] = rng.integers(1000, vocab_size, size=n)
            middle = max(1, n // 3)
            ids[row, [0, middle, n - 1]] = (101, 102, 102)
            types[row, middle + 1 : n] = 1
        batches.append({"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64), "token_type_ids": types})
    return batches


def check(onnx_path: Path, model: Any, *, qa: bool, tolerance: float = TOLERANCE, label: str | None = None) -> float:
    """Run the fp32 graph at ``onnx_path`` and ``model`` in torch on :func:`check_batches`; compare the outputs at
    the real (unpadded) tokens. Returns the largest difference; ModelError if it exceeds ``tolerance``."""
    import torch

    label = label or str(onnx_path)

    sess = session(onnx_path, threads=1)
    worst = 0.0
    for batch in check_batches(int(model.config.vocab_size)):
        shape = "x".join(map(str, batch["input_ids"].shape))
        try:
            got = run(sess, batch)
        except Exception as exc:  # noqa: BLE001 - a graph that cannot run this shape is unusable
            raise ModelError(f"the ONNX graph {label} fails on a {shape} batch: {exc}") from exc
        with torch.inference_mode():
            out = model(**{name: torch.from_numpy(batch[name]) for name in INPUTS})
        want = [out.start_logits, out.end_logits] if qa else [out.last_hidden_state]
        real = batch["attention_mask"].astype(bool)
        for name, a, b in zip(("start logits", "end logits") if qa else ("hidden states",), got, want, strict=True):
            b = b.float().numpy()
            if a.shape != b.shape:
                raise ModelError(
                    f"the ONNX graph {label} differs from torch on a {shape} batch: "
                    f"{name} of shape {a.shape}, torch {b.shape}"
                )
            diff = float(np.abs(a[real] - b[real]).max())
            if not diff <= tolerance:  # also refuses NaN
                raise ModelError(
                    f"the ONNX graph {label} differs from torch on a {shape} batch: "
                    f"max abs difference in the {name} {diff:.3g} > {tolerance:g}"
                )
            worst = max(worst, diff)
    return worst


def session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    # No spin-waiting between runs: a request runs the embedder's session, then the reader's, from a server
    # thread, and the first one's threads spinning after their run took the cores from the second. Measured on
    # 2 cores, /ask from a worker thread, SQuAD index: p50 93 -> 52 ms one at a time, 18.2 -> 20.3 questions/s
    # at 4 in flight (one engine per process, the two settings alternating, 60 seed questions x 2 rounds).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def weights_key(path: Path) -> str:
    return sha256_file(path)[:16]


def run(sess, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
    return sess.run(None, {name: batch[name].astype(np.int64, copy=False) for name in INPUTS})


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 quantisation (per-channel weights) of the matrix products that tolerate it.

    Measured on MiniLM (eval/bench.py): quantising every MatMul costs cosine 0.94 against fp32 embeddings;
    the feed-forward *down* projections (whose input is the skewed GELU output) are most of that loss, so
    they stay fp32, as do the activation-by-activation products of attention. The rest (Q, K, V, attention
    output, feed-forward up) are quantised: cosine >= 0.99 at about 1.5x the speed of fp32.
    """
    import onnx as onnx_lib
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx_lib.load(str(source)).graph
    shapes = {init.name: tuple(init.dims) for init in graph.initializer}
    keep_fp32 = []
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        weight = next((shapes[x] for x in node.input if x in shapes), None)
        if weight is None or (len(weight) == 2 and weight[0] > weight[1]):  # activations, or a down projection
            keep_fp32.append(node.name)
    log.info("quantising %s to int8, once per machine (about 5 s): %s", source.name, target)
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    try:
        with _quiet_quantizer():
            quantize_dynamic(
                str(source),
                str(tmp),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul"],
                per_channel=True,
                nodes_to_exclude=keep_fp32,
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


class _BelowError(logging.Filter):
    """Drops the records under ERROR that code in ``folder`` logs."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not record.pathname.startswith(self.folder)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime.quantization logs through the root logger (``logging.info``/``logging.warning``): one INFO line
    per unquantised tensor and a "consider pre-processing" warning, none of which the user can act on. Its
    records under ERROR are dropped for the call; and as ``logging.warning`` on a root logger with no handler
    installs one for good (``basicConfig``), which then prints every library's DEBUG records (bm25s sets its
    logger to DEBUG), the root logger gets a NullHandler for the call when it has none."""
    import onnxruntime.quantization

    root = logging.getLogger()
    drop = _BelowError(os.path.dirname(onnxruntime.quantization.__file__))
    guard = None if root.handlers else logging.NullHandler()
    root.addFilter(drop)
    if guard is not None:
        root.addHandler(guard)
    try:
        yield
    finally:
        root.removeFilter(drop)
        if guard is not None:
            root.removeHandler(guard)


# ------------------------------------------------------------------------------------------ exported files

KINDS = ("embedder", "reader")


def model_path(kind: str, folder: Path, *, int8: bool) -> Path:
    """Where the ONNX file of the model in ``folder`` is cached (named by its weights' checksum)."""
    if kind not in KINDS:
        raise ModelError(f"ONNX model kind must be one of {', '.join(KINDS)}, got {kind!r}")
    path = cache_dir() / f"{kind}-{weights_key(folder / 'model.safetensors')}.onnx"
    return path.with_name(f"{path.stem}-int8-{INT8_RECIPE}.onnx") if int8 else path


def ensure(kind: str, folder: Path, *, int8: bool) -> Path:
    """The cached ONNX file for a model, exported (and quantised) first when it is missing.

    The export needs torch; it runs in a child process (``python -m rag.onnx``), so that a process serving
    from ONNX never imports torch and keeps its memory (torch and transformers are most of a serving process's
    resident size when imported)."""
    import subprocess
    import sys

    target = model_path(kind, folder, int8=int8)
    if target.is_file():
        return target
    log.info(
        "exporting the %s to ONNX%s in a child process, once per machine (about 15 s): %s",
        kind,
        " and quantising it to int8" if int8 else "",
        target,
    )
    command = [sys.executable, "-m", "rag.onnx", kind, str(folder)] + (["--int8"] if int8 else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not target.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise ModelError(f"exporting the {kind} in {folder} to ONNX failed: " + " | ".join(tail))
    return target


def export_model(kind: str, folder: Path, *, int8: bool) -> Path:
    """Export (and quantise) one model in this process: loads it in torch. ``ensure`` calls it in a child."""
    fp32 = model_path(kind, folder, int8=False)
    if not fp32.is_file():
        if kind == "embedder":
            from sentence_transformers import SentenceTransformer

            export(SentenceTransformer(str(folder), device="cpu", local_files_only=True)[0].auto_model, fp32, qa=False)
        else:
            from rag.reader.model import SpanReader

            export(SpanReader.load(folder, backend="torch").model, fp32, qa=True)
    if not int8:
        return fp32
    target = model_path(kind, folder, int8=True)
    if not target.is_file():
        quantize_int8(fp32, target)
    return target


def main(argv: list[str] | None = None) -> None:
    """``python -m rag.onnx embedder|reader FOLDER [--int8]``: export one model's ONNX file into the cache."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--int8", action="store_true")
    args = parser.parse_args(argv)
    print(export_model(args.kind, args.folder, int8=args.int8))


if __name__ == "__main__":
    from rag.onnx import main as _main  # the module under its own name (this file runs as __main__)

    _main()
