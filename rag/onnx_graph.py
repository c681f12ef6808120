"""The BERT forward pass written directly as an ONNX graph from the weights file: no torch, no tracing.

The embedder (all-MiniLM-L6-v2) and the reader (the same encoder with a span head) are BERT encoders; their
``model.safetensors`` is read with numpy and every operation of the forward pass (embeddings, self-attention,
feed-forward with exact GELU, layer norms, the span head) becomes a node. So a serving install makes its ONNX
files without torch. The graph is the same maths as transformers' ``BertModel`` (the padding mask as an
additive -10000, as in the traced export this replaces); ``rag/onnx.py`` checks each graph it builds against
outputs torch computed from the same weights (``rag/onnx_reference/``), and the tests check it against torch
itself.

Inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` (int64, batch x length); outputs
``last_hidden_state`` (embedder) or ``start_logits`` and ``end_logits`` (reader).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

OPSET = 17  # LayerNormalization is a standard operator from 17 on


class _Graph:
    def __init__(self) -> None:
        from onnx import helper

        self.helper = helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._names = 0

    def name(self, stem: str) -> str:
        self._names += 1
        return f"{stem}_{self._names}"

    def const(self, stem: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(np.array(value, order="C"), name))  # (0-d stays 0-d)
        return name

    def op(self, op_type: str, inputs: list[str], stem: str | None = None, **attrs: Any) -> str:
        out = self.name(stem or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def linear(self, x: str, weight: np.ndarray, bias: np.ndarray, stem: str) -> str:
        """``x @ weight.T + bias`` for a torch ``Linear`` weight (out x in): MatMul with the (in x out) matrix."""
        w = self.const(f"{stem}.weight", weight.astype(np.float32).T)
        b = self.const(f"{stem}.bias", bias.astype(np.float32))
        return self.op("Add", [self.op("MatMul", [x, w], stem=f"{stem}.matmul"), b], stem=stem)

    def layer_norm(self, x: str, weight: np.ndarray, bias: np.ndarray, eps: float, stem: str) -> str:
        scale = self.const(f"{stem}.weight", weight.astype(np.float32))
        shift = self.const(f"{stem}.bias", bias.astype(np.float32))
        return self.op("LayerNormalization", [x, scale, shift], stem=stem, axis=-1, epsilon=eps)


def bert_graph(weights: Mapping[str, np.ndarray], config: Mapping[str, Any], *, qa: bool) -> Any:
    """The ONNX model (an ``onnx.ModelProto``) of a BERT encoder, with the span head when ``qa``.

    ``weights``: the tensors of a transformers ``BertModel`` or ``BertForQuestionAnswering`` (keys with or
    without the ``bert.`` prefix, any float dtype; computed in float32); ``config``: its config.json."""
    from onnx import TensorProto, helper

    w = {k.removeprefix("bert."): np.asarray(v) for k, v in weights.items()}
    if config.get("hidden_act", "gelu") != "gelu" or config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only BERT with exact GELU and absolute positions is supported")
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    dh, eps = hidden // heads, float(config["layer_norm_eps"])
    g = _Graph()

    ids, mask, types = "input_ids", "attention_mask", "token_type_ids"
    one = g.const("one", np.array(1, dtype=np.int64))
    zero = g.const("zero", np.array(0, dtype=np.int64))
    length = g.op("Gather", [g.op("Shape", [ids]), one], axis=0, stem="length")
    positions = g.op("Unsqueeze", [g.op("Range", [zero, length, one]), g.const("axis0", np.array([0]))])
    x = g.op(
        "Add",
        [
            g.op(
                "Add",
                [
                    g.op(
                        "Gather",
                        [g.const("word_embeddings", w["embeddings.word_embeddings.weight"].astype(np.float32)), ids],
                    ),
                    g.op(
                        "Gather",
                        [
                            g.const(
                                "position_embeddings", w["embeddings.position_embeddings.weight"].astype(np.float32)
                            ),
                            positions,
                        ],
                    ),
                ],
            ),
            g.op(
                "Gather",
                [
                    g.const("token_type_embeddings", w["embeddings.token_type_embeddings.weight"].astype(np.float32)),
                    types,
                ],
            ),
        ],
        stem="embeddings",
    )
    x = g.layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps, "embeddings.LayerNorm")

    # (1 - mask) * -10000, shaped (batch, 1, 1, length): added to every head's attention scores.
    keep = g.op("Cast", [mask], to=TensorProto.FLOAT)
    bias = g.op(
        "Mul",
        [
            g.op("Sub", [g.const("f_one", np.array(1.0, dtype=np.float32)), keep]),
            g.const("masked", np.array(-10000.0, dtype=np.float32)),
        ],
    )
    bias = g.op("Unsqueeze", [bias, g.const("axes12", np.array([1, 2]))], stem="attention_bias")
    split_shape = g.const("split_shape", np.array([0, 0, heads, dh]))
    merge_shape = g.const("merge_shape", np.array([0, 0, hidden]))
    scale = g.const("scale", np.array(1.0 / math.sqrt(dh), dtype=np.float32))
    sqrt2 = g.const("sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    half = g.const("half", np.array(0.5, dtype=np.float32))

    layer = 0
    while f"encoder.layer.{layer}.attention.self.query.weight" in w:
        p = f"encoder.layer.{layer}."

        def heads_of(t: str, perm: list[int]) -> str:
            return g.op("Transpose", [g.op("Reshape", [t, split_shape])], perm=perm)

        q = heads_of(
            g.linear(x, w[p + "attention.self.query.weight"], w[p + "attention.self.query.bias"], p + "query"),
            [0, 2, 1, 3],
        )
        k = heads_of(
            g.linear(x, w[p + "attention.self.key.weight"], w[p + "attention.self.key.bias"], p + "key"), [0, 2, 3, 1]
        )
        v = heads_of(
            g.linear(x, w[p + "attention.self.value.weight"], w[p + "attention.self.value.bias"], p + "value"),
            [0, 2, 1, 3],
        )
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), bias])
        context = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        context = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), merge_shape])
        attended = g.linear(
            context,
            w[p + "attention.output.dense.weight"],
            w[p + "attention.output.dense.bias"],
            p + "attention_output",
        )
        x = g.layer_norm(
            g.op("Add", [attended, x]),
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
            eps,
            p + "attention_norm",
        )
        h = g.linear(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"], p + "up")
        gelu = g.op(
            "Mul",
            [
                g.op("Mul", [h, half]),
                g.op("Add", [g.op("Erf", [g.op("Div", [h, sqrt2])]), g.const("f_1", np.array(1.0, dtype=np.float32))]),
            ],
        )
        down = g.linear(gelu, w[p + "output.dense.weight"], w[p + "output.dense.bias"], p + "down")
        x = g.layer_norm(
            g.op("Add", [down, x]),
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
            eps,
            p + "output_norm",
        )
        layer += 1
    if layer != int(config["num_hidden_layers"]):
        raise ValueError(f"the weights hold {layer} layers, the config says {config['num_hidden_layers']}")

    batch_length = ["batch", "length"]
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, batch_length) for name in (ids, mask, types)]
    if qa:
        logits = g.linear(x, weights["qa_outputs.weight"], weights["qa_outputs.bias"], "qa_outputs")
        g.nodes.append(helper.make_node("Gather", [logits, zero], ["start_logits"], name="start_logits", axis=2))
        g.nodes.append(helper.make_node("Gather", [logits, one], ["end_logits"], name="end_logits", axis=2))
        outputs = [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, batch_length) for n in ("start_logits", "end_logits")
        ]
    else:
        g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="last_hidden_state"))
        outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [*batch_length, hidden])]
    graph = helper.make_graph(g.nodes, "bert", inputs, outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="rag.onnx_graph")
    model.ir_version = 8
    return model
