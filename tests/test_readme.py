"""The README's result tables equal the results files they cite (eval/readme_tables.py)."""

from __future__ import annotations

from tests.conftest import ROOT, eval_module


def _tables():
    return eval_module("readme_tables")


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
