"""The optional parts of the install (pyproject.toml's extras), and the error a missing one gives.

Serving (ingest, index, ask, the page, ``rag eval`` against a service) needs none of them; ``make install-all``
installs every one."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from rag.errors import ModelError

#: What each extra is for (the README's install section says the same).
EXTRAS = {
    "train": "training the reader, the torch runtimes, the torch reference outputs of the ONNX graphs",
    "heuristic": "the heuristic reader (spaCy entities)",
    "eval": "the plots of rag eval and rag trust",
    "ray": "rag ingest --engine ray",
}


def need(module: str, extra: str, purpose: str) -> ModuleType:
    """``module`` imported, or ModelError saying which extra installs it (``purpose``: what asked for it)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelError(
            f"{purpose} needs the '{extra}' extra ({EXTRAS[extra]}), which this install lacks: "
            f"pip install -e '.[{extra}]', or `make install-all` for every extra ({exc})"
        ) from exc


def have(module: str) -> bool:
    """Whether ``module`` can be imported (an optional part that is skipped, with a note, when absent)."""
    return importlib.util.find_spec(module) is not None
