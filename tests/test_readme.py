"""The README's result tables equal the results files they cite (eval/readme_tables.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _tables():
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "eval" / "readme_tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_result_table_in_the_readme_is_what_its_results_file_says():
    tables = _tables()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    _, changed = tables.render(readme, ROOT / "eval" / "results")
    assert changed == [], f"run eval/readme_tables.py: {changed} differ from eval/results"
    assert readme.count("<!-- table:") == len(tables.TABLES)


def test_a_table_edited_by_hand_is_caught(tmp_path):
    tables = _tables()
    readme = (ROOT / "README.md").read_text(encoding="utf-8").replace("| 626 |", "| 627 |", 1)
    _, changed = tables.render(readme, ROOT / "eval" / "results")
    assert changed == ["trust-kinds"]
