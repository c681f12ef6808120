"""The ``rag`` command: thin, each command calls the library (``rag``), an offline job (``rag.offline``) or the
service (``service``). This package is the one place all three meet: the library never imports the service or
the offline jobs, and the service never imports the offline jobs (tests/test_layout.py).

    base.py       the Typer app, exit codes, shared options, errors
    documents.py  ingest, verify, optimize, export (the ONNX files)
    asking.py     ask, search, serve
    evaluate.py   eval (the harness in rag/evaluation, against a service started here, in-process, or at --url)
    feedback.py   feedback export, feedback eval
    training.py   train-reader (and --extra-gold), fit-calibration, trust
"""

from __future__ import annotations

import importlib
import sys

from cli.base import EXIT_INDEX, EXIT_MODEL, EXIT_PROBLEMS, EXIT_SERVICE, EXIT_USAGE, app

# Each module registers its commands when imported; `rag --help` lists them in this order.
for _name in ("documents", "asking", "training", "feedback", "evaluate"):
    importlib.import_module(f"cli.{_name}")
app.command("eval")(importlib.import_module("cli.evaluate").eval_command)


def main() -> None:  # pragma: no cover
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["EXIT_INDEX", "EXIT_MODEL", "EXIT_PROBLEMS", "EXIT_SERVICE", "EXIT_USAGE", "app", "main"]
