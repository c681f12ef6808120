"""ONNX Runtime paths for the two model passes (embedding and reading), built from our own weights without torch.

The graph is the BERT forward pass written as ONNX nodes straight from ``model.safetensors``
(``rag/onnx_graph.py``): a serving install needs neither torch nor transformers to make it. Each graph is checked,
before it is written, against the outputs torch computed from the same weights on inputs of several shapes
(batch sizes, lengths, padding): the reference file beside the reader's weights (written when the reader is
trained) and ``rag/embedder-reference.json`` for the embedder. The tests check the graph against torch itself.
Built files are cached on disk by the weights' checksum, so they are made once per machine (about 2 s each, 5 s
more for int8).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from rag.checksums import sha256_file
from rag.errors import ModelError

log = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: Part of the cached int8 file's name: a new quantisation recipe never reuses an old file.
INT8_RECIPE = "pc-noffndown-v2"
#: Part of every cached file's name: a graph made another way is never reused.
GRAPH_RECIPE = "g1"
#: Largest absolute difference allowed between the fp32 graph and torch (logits, hidden states); seen: 0 to ~1e-5.
TOLERANCE = 1e-3
#: (real lengths of the rows) of the check batches: several batch sizes and lengths, rows padded to the longest,
#: up to the 256 tokens that the reader and the embedder feed.
CHECK_LENGTHS = ((5,), (40, 13, 27), (256, 130))
#: The reader's reference outputs, beside its weights; the embedder's, in the package (its weights are not ours).
REFERENCE = "onnx-reference.json"
EMBEDDER_REFERENCE = Path(__file__).with_name("embedder-reference.json")


def cache_dir() -> Path:
    from rag.settings import onnx_cache_dir  # (only the settings module reads the environment)

    return onnx_cache_dir()


def check_batches(vocab_size: int, *, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Batches of several shapes: [CLS] ... [SEP] ... [SEP] rows, two segments, padded with 0."""
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


def summarise(outputs: list[np.ndarray], batch: dict[str, np.ndarray], *, qa: bool) -> list[list[float]]:
    """What a reference keeps of a batch's outputs: the reader's start and end logits at every real token; the
    embedder's mean-pooled hidden state and the first and last real tokens' hidden states of each row."""
    real = batch["attention_mask"].astype(bool)
    if qa:
        return [[float(v) for v in out[real]] for out in outputs]
    (hidden,) = outputs
    rows = []
    for i, keep in enumerate(real):
        tokens = hidden[i][keep]
        rows.append([float(v) for v in np.concatenate([tokens.mean(axis=0), tokens[0], tokens[-1]])])
    return rows


def reference_outputs(kind: str, folder: Path) -> dict:
    """The outputs torch computes from the weights in ``folder`` on :func:`check_batches` (needs torch)."""
    from rag.extras import need

    torch = need("torch", "train", "computing torch's reference outputs")

    qa = kind == "reader"
    if qa:
        from rag.reader.model import SpanReader

        model = SpanReader.load(folder, backend="torch").model
    else:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)[0].auto_model
    model = model.float().eval()
    batches = []
    for batch in check_batches(int(model.config.vocab_size)):
        with torch.inference_mode():
            out = model(**{name: torch.from_numpy(batch[name]) for name in INPUTS})
        got = [out.start_logits, out.end_logits] if qa else [out.last_hidden_state]
        rows = summarise([t.float().numpy() for t in got], batch, qa=qa)
        batches.append([[round(v, 6) for v in row] for row in rows])
    return {
        "kind": kind,
        "weights_sha256": sha256_file(folder / "model.safetensors"),
        "vocab_size": int(model.config.vocab_size),
        "computed_by": f"torch {torch.__version__}",
        "batches": batches,
    }


def write_reference(kind: str, folder: Path, target: Path | None = None) -> Path:
    """Compute the reference outputs in torch and write them (the reader's beside its weights)."""
    target = target or (folder / REFERENCE if kind == "reader" else EMBEDDER_REFERENCE)
    target.write_text(json.dumps(reference_outputs(kind, folder)) + "\n")
    return target


def reference_for(kind: str, folder: Path) -> dict | None:
    """The reference outputs for the model in ``folder``: its own file, else (the embedder) the packaged one
    when it was computed from these weights; None when there are none."""
    if (folder / REFERENCE).is_file():
        return json.loads((folder / REFERENCE).read_text())
    if kind == "embedder" and EMBEDDER_REFERENCE.is_file():
        packaged = json.loads(EMBEDDER_REFERENCE.read_text())
        if packaged["weights_sha256"] == sha256_file(folder / "model.safetensors"):
            return packaged
    return None


def check(onnx_path: Path, reference: dict, *, tolerance: float = TOLERANCE, label: str | None = None) -> float:
    """Run the fp32 graph at ``onnx_path`` on :func:`check_batches` and compare with ``reference`` (torch's
    outputs from the same weights). Returns the largest difference; ModelError if it exceeds ``tolerance``."""
    label = label or str(onnx_path)
    qa = reference["kind"] == "reader"
    sess = session(onnx_path, threads=1)
    worst = 0.0
    for batch, want in zip(check_batches(int(reference["vocab_size"])), reference["batches"], strict=True):
        shape = "x".join(map(str, batch["input_ids"].shape))
        try:
            got = summarise(run(sess, batch), batch, qa=qa)
        except Exception as exc:  # noqa: BLE001 - a graph that cannot run this shape is unusable
            raise ModelError(f"the ONNX graph {label} fails on a {shape} batch: {exc}") from exc
        what = "logits" if qa else "hidden states"
        if [len(r) for r in got] != [len(r) for r in want]:
            raise ModelError(f"the ONNX graph {label} differs from torch on a {shape} batch: {what} of another shape")
        diff = max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(got, want, strict=True))
        if not diff <= tolerance:  # also refuses NaN
            raise ModelError(
                f"the ONNX graph {label} differs from torch on a {shape} batch: "
                f"max abs difference in the {what} {diff:.3g} > {tolerance:g}"
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


# ------------------------------------------------------------------------------------------ built files

KINDS = ("embedder", "reader")


def model_path(kind: str, folder: Path, *, int8: bool) -> Path:
    """Where the ONNX file of the model in ``folder`` is cached (named by its weights' checksum)."""
    if kind not in KINDS:
        raise ModelError(f"ONNX model kind must be one of {', '.join(KINDS)}, got {kind!r}")
    path = cache_dir() / f"{kind}-{weights_key(folder / 'model.safetensors')}-{GRAPH_RECIPE}.onnx"
    return path.with_name(f"{path.stem}-int8-{INT8_RECIPE}.onnx") if int8 else path


def ensure(kind: str, folder: Path, *, int8: bool) -> Path:
    """The cached ONNX file for a model, built (checked, and quantised) first when it is missing."""
    target = model_path(kind, folder, int8=int8)
    if target.is_file():
        return target
    return build_model(kind, folder, int8=int8)


def build(kind: str, folder: Path, path: Path) -> Path:
    """Write the fp32 graph of the model in ``folder`` at ``path``, once it agrees with the reference outputs.

    Nothing is written when it does not (ModelError names the difference); a reader folder without a reference
    file (trained before they were written) is built with a warning."""
    import onnx as onnx_lib
    from safetensors.numpy import load_file

    from rag.onnx_graph import bert_graph

    reference = reference_for(kind, folder)
    weights_sha = sha256_file(folder / "model.safetensors")
    if reference is not None and reference["weights_sha256"] != weights_sha:
        raise ModelError(f"the reference outputs for the {kind} in {folder} were computed from other weights")
    log.info("building the %s's ONNX graph from its weights, once per machine (about 2 s): %s", kind, path)
    config = json.loads((folder / "config.json").read_text())
    try:
        graph = bert_graph(load_file(str(folder / "model.safetensors")), config, qa=kind == "reader")
    except (KeyError, ValueError) as exc:
        raise ModelError(f"the {kind} in {folder} is not a BERT encoder this project can build: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        onnx_lib.save(graph, str(tmp))
        if reference is None:
            log.warning("no torch reference outputs for the %s in %s: its ONNX graph is not checked", kind, folder)
        else:
            check(tmp, reference, label=f"{path} (not written)")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def build_model(kind: str, folder: Path, *, int8: bool) -> Path:
    """Build (and quantise) one model's ONNX file into the cache."""
    fp32 = model_path(kind, folder, int8=False)
    if not fp32.is_file():
        build(kind, folder, fp32)
    if not int8:
        return fp32
    target = model_path(kind, folder, int8=True)
    if not target.is_file():
        quantize_int8(fp32, target)
    return target


def main(argv: list[str] | None = None) -> None:
    """``python -m rag.onnx reference embedder|reader FOLDER``: compute torch's reference outputs for a model
    (needs torch: the training extra) and write them where the ONNX build looks for them."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("action", choices=["reference"])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    print(write_reference(args.kind, args.folder))


if __name__ == "__main__":
    from rag.onnx import main as _main  # the module under its own name (this file runs as __main__)

    _main()
