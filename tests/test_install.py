"""What each install holds (pyproject.toml, the two locks) and what a missing extra says (rag/extras.py)."""

from __future__ import annotations

import logging
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from rag.errors import ModelError
from rag.extras import need

ROOT = Path(__file__).resolve().parent.parent
#: Installed only with an extra: never in the serving lock.
EXTRAS_ONLY = {"torch", "transformers", "sentence-transformers", "spacy", "matplotlib", "ray", "scikit-learn", "scipy"}


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: str) -> dict[str, str]:
    out = {}
    for line in (ROOT / lock).read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line):
            out[_name(m.group(1))] = m.group(2)
    return out


def test_the_serving_lock_holds_every_serving_dependency_at_the_full_locks_versions_and_no_torch():
    serve, full = pins("requirements-serve.lock"), pins("requirements.lock")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not EXTRAS_ONLY & set(serve)
    assert {name: full.get(name) for name in serve} == serve
    for dependency in project["dependencies"]:
        assert _name(Requirement(dependency).name) in serve
    for extra in project["optional-dependencies"].values():
        for dependency in extra:
            assert _name(Requirement(dependency).name) in full


def test_a_missing_extra_says_which_one_installs_it():
    with pytest.raises(
        ModelError, match=r"the reader in torch needs the 'train' extra .* pip install -e '\.\[train\]'"
    ):
        need("no_such_module_for_this_test", "train", "the reader in torch")


def test_the_heuristic_reader_without_spacy_names_its_extra(monkeypatch):
    import rag.extras
    from rag.reader.heuristic import HeuristicReader

    real = rag.extras.importlib.import_module

    def without_spacy(name: str, *args):
        if name == "spacy":
            raise ImportError("No module named 'spacy'")
        return real(name, *args)

    monkeypatch.setattr(rag.extras.importlib, "import_module", without_spacy)
    with pytest.raises(ModelError, match=r"heuristic reader .* needs the 'heuristic' extra"):
        HeuristicReader().load()


def test_the_trust_report_is_written_without_matplotlib_and_says_the_plot_is_missing(tmp_path, monkeypatch, caplog):
    import rag.extras
    from rag.evaluation.trust import write_trust

    monkeypatch.setattr(rag.extras, "have", lambda module: module != "matplotlib")
    with caplog.at_level(logging.WARNING):
        write_trust({"kinds": {}}, tmp_path)
    assert (tmp_path / "summary.json").is_file() and not (tmp_path / "report.png").exists()
    assert "matplotlib is not installed" in caplog.text
