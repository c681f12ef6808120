"""The models' WordPiece tokenizer through the ``tokenizers`` library alone, without transformers or torch.

Serving runs both models in ONNX Runtime; what it needs from transformers is the tokenizer call, and
importing transformers costs seconds and hundreds of MiB (it pulls in torch when torch is installed).
``FastTokenizer`` reads the same ``tokenizer.json`` and implements the part of transformers' tokenizer call
that the embedder, the chunker and the reader use, the way transformers' fast tokenizers do it (they call
the same ``tokenizers`` object: set truncation and padding, ``encode_batch``, then flatten the overflowing
windows after each input). ``tests/test_tokenizer.py`` checks it against transformers' tokenizer.

Like transformers' fast tokenizer, one object is not safe to call from several threads at once (each call
sets its truncation and padding state): callers serialise (see ``Embedder._tok_lock``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ModelError, ValidationError

_TRUNCATION = {True: "longest_first", "longest_first": "longest_first", "only_first": "only_first"}
_TRUNCATION["only_second"] = "only_second"


class Encoded(dict):
    """A batch of encodings: ``input_ids``, ``token_type_ids``, ``attention_mask`` (lists, or int64 arrays with
    ``return_tensors="np"``), ``offset_mapping`` and ``overflow_to_sample_mapping`` when asked for."""

    def __init__(self, data: dict[str, Any], encodings: Sequence[Any]) -> None:
        super().__init__(data)
        self.encodings = list(encodings)

    def sequence_ids(self, i: int) -> list[int | None]:
        return list(self.encodings[i].sequence_ids)


class FastTokenizer:
    """``tokenizer.json`` as a callable with transformers' keyword arguments (the subset this project uses)."""

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer

        path = Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise ModelError(f"no tokenizer.json at {file}")
        self._tok = Tokenizer.from_file(str(file))
        self._tok.no_truncation()
        self._tok.no_padding()
        pad = "[PAD]"
        pad_id = self._tok.token_to_id(pad)
        if pad_id is None:
            raise ModelError(f"{file} has no {pad} token")
        self._pad = (pad, pad_id)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return int(self._tok.num_special_tokens_to_add(pair))

    def __call__(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        *,
        add_special_tokens: bool = True,
        truncation: bool | str = False,
        max_length: int | None = None,
        stride: int = 0,
        padding: bool | str = False,
        return_overflowing_tokens: bool = False,
        return_offsets_mapping: bool = False,
        return_tensors: str | None = None,
    ) -> Encoded:
        texts = [text] if isinstance(text, str) else list(text)
        pairs = None if text_pair is None else ([text_pair] if isinstance(text_pair, str) else list(text_pair))
        if pairs is not None and len(pairs) != len(texts):
            raise ValidationError(f"{len(texts)} texts but {len(pairs)} text pairs")
        if truncation:
            if max_length is None:
                raise ValidationError("truncation needs max_length")
            strategy = _TRUNCATION.get(truncation)  # type: ignore[call-overload]
            if strategy is None:
                raise ValidationError(f"unknown truncation {truncation!r}")
            self._tok.enable_truncation(max_length, stride=stride, strategy=strategy, direction="right")
        else:
            self._tok.no_truncation()
        if padding:
            if padding not in (True, "longest"):
                raise ValidationError(f"only padding to the longest row is supported, got {padding!r}")
            token, pad_id = self._pad
            self._tok.enable_padding(pad_id=pad_id, pad_token=token, pad_type_id=0, direction="right")
        else:
            self._tok.no_padding()
        inputs: list[Any] = texts if pairs is None else list(zip(texts, pairs, strict=True))
        batch = self._tok.encode_batch(inputs, add_special_tokens=add_special_tokens)
        encodings, owners = [], []
        for i, enc in enumerate(batch):
            encodings.append(enc)
            owners.append(i)
            if return_overflowing_tokens:
                for extra in enc.overflowing:
                    encodings.append(extra)
                    owners.append(i)
        data: dict[str, Any] = {
            "input_ids": [e.ids for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
        }
        if return_offsets_mapping:
            data["offset_mapping"] = [e.offsets for e in encodings]
        if return_overflowing_tokens:
            data["overflow_to_sample_mapping"] = owners
        if return_tensors == "np":
            for key in ("input_ids", "token_type_ids", "attention_mask"):
                data[key] = np.asarray(data[key], dtype=np.int64)
        elif return_tensors is not None:
            raise ValidationError(f"return_tensors must be 'np' or None, got {return_tensors!r}")
        return Encoded(data, encodings)
