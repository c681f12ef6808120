"""``rag eval``: placeholder, replaced by the harness command."""

from __future__ import annotations

import typer


def eval_command() -> None:
    """Score a running service against gold questions (not built yet)."""
    raise typer.Exit(2)
