"""ONNX Runtime paths for the two model passes (embedding and reading), exported from our own weights.

transformers' BERT builds its attention mask with shape-dependent Python that the ONNX tracer freezes, so the
export goes through a plain re-statement of the same BERT forward pass (same weights, same maths). The exported
graph is checked against torch on inputs of other shapes before it is used. Exports are cached on disk by the
weights' checksum, so they happen once per machine.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: Part of the cached int8 file's name: a new quantisation recipe never reuses an old file.
INT8_RECIPE = "pc-noffndown-v2"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rag-onnx"


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
    """Export a transformers BERT (``qa``: BertForQuestionAnswering) to ONNX fp32 at ``path``."""
    import torch

    bert = model.bert if qa else model
    module = _traceable(bert, model.qa_outputs if qa else None)
    ids = torch.tensor([[101, 2023, 2003, 1037, 3231, 102, 0, 0], [101, 2178, 102, 2307, 2003, 2009, 2182, 102]])
    mask = (ids != 0).long()
    types = torch.zeros_like(ids)
    outputs = ["start_logits", "end_logits"] if qa else ["last_hidden_state"]
    axes = {name: {0: "batch", 1: "seq"} for name in (*INPUTS, *outputs)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with torch.inference_mode():
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
    os.replace(tmp, path)
    return path


def session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def weights_key(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


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
    tmp = target.with_suffix(f".tmp{os.getpid()}")
    quantize_dynamic(
        str(source),
        str(tmp),
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        nodes_to_exclude=keep_fp32,
    )
    os.replace(tmp, target)
    return target
