"""The layout's one direction: the request path (service/ and the library modules it loads) never reaches the
offline jobs (rag/offline), the evaluation harness (rag/evaluation) or the command line (cli/), and the library
never imports the service, by name or by string. docs/architecture.md draws it."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OFFLINE = ("rag.offline", "rag.evaluation", "cli")
HEAVY = ("torch", "transformers", "sentence_transformers", "spacy", "matplotlib", "ray", "sklearn", "onnx")

#: Every ``rag`` module that loading ``service.main`` and answering one ``POST /ask`` loads. A new import on the
#: request path changes this list: the test fails, and the change shows up in review. (``rag.onnx_graph`` is
#: left out: it is loaded only when the ONNX files are not built yet, once per machine.)
LAZY = ("rag.onnx_graph",)
REQUEST_PATH = [
    "rag",
    "rag.answer_text",
    "rag.checksums",
    "rag.chunking",
    "rag.converters",
    "rag.dates",
    "rag.decide",
    "rag.dense",
    "rag.document_ids",
    "rag.embedding",
    "rag.engine",
    "rag.errors",
    "rag.feedback",
    "rag.filters",
    "rag.lexical",
    "rag.loaders",
    "rag.onnx",
    "rag.pipeline",
    "rag.question_types",
    "rag.reader",
    "rag.reader.model",
    "rag.reader.windows",
    "rag.reader_calibration",
    "rag.records",
    "rag.retrieval",
    "rag.sentences",
    "rag.settings",
    "rag.shards",
    "rag.squad",
    "rag.store",
    "rag.store.changes",
    "rag.store.columns",
    "rag.store.commit",
    "rag.store.files",
    "rag.store.index",
    "rag.store.loading",
    "rag.store.merge",
    "rag.store.remote",
    "rag.store.search",
    "rag.store.segment",
    "rag.store.texts",
    "rag.text",
    "rag.text_documents",
    "rag.tokenizer",
    "rag.types",
    "rag.wire",
]


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def _request_path_files() -> list[Path]:
    files = sorted((ROOT / "service").rglob("*.py")) + sorted((ROOT / "rag").rglob("*.py"))
    return [f for f in files if not any(f.is_relative_to(ROOT / p.replace(".", "/")) for p in OFFLINE)]


def _under(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_no_request_path_module_imports_an_offline_one():
    offenders = {
        str(f.relative_to(ROOT)): sorted(m for m in _imports(f) if _under(m, OFFLINE)) for f in _request_path_files()
    }
    assert {f: m for f, m in offenders.items() if m} == {}


def test_the_library_never_imports_the_service_by_name_or_by_string():
    pattern = re.compile(r"^service([.:]|$)")
    found = {}
    for f in sorted((ROOT / "rag").rglob("*.py")):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        names = {m for m in _imports(f) if _under(m, ("service", "cli"))}
        strings = {
            n.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and pattern.match(n.value)
        }
        if names or strings:
            found[str(f.relative_to(ROOT))] = sorted(names | strings)
    assert found == {}


def test_the_offline_jobs_are_where_the_layout_says():
    for f in sorted((ROOT / "rag" / "offline").glob("*.py")):
        assert not (ROOT / "rag" / "reader" / f.name).exists() or f.name == "__init__.py", f.name


CHILD = """
import json, sys
from fastapi.testclient import TestClient
from rag.settings import Settings
from service.main import create_app

with TestClient(create_app(Settings())) as client:
    r = client.post("/ask", json={"question": "How many troops are in US Forces Korea?"})
    assert r.status_code == 200, r.text
print(json.dumps(sorted(sys.modules)))
"""


def test_the_request_path_loads_only_its_own_modules(tmp_path, seed_index_dir):
    index = tmp_path / "index"
    shutil.copytree(seed_index_dir, index)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "RAG_INDEX_DIR": str(index)}
    for name in ("XDG_CACHE_HOME", "TMPDIR"):
        if name in __import__("os").environ:
            env[name] = __import__("os").environ[name]
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert [m for m in loaded if _under(m, OFFLINE)] == []
    assert [m for m in loaded if _under(m, HEAVY)] == []
    assert sorted(m for m in loaded if _under(m, ("rag",)) and m not in LAZY) == REQUEST_PATH


#: Modules stay small (STYLE.md 13): a newcomer reads one in a sitting.
MAX_LINES = 400


def test_no_module_is_over_400_lines():
    files = [p for top in ("rag", "service", "cli", "eval", "tests") for p in (ROOT / top).rglob("*.py")]
    files = [p for p in files if ".cache" not in p.parts and ".venv" not in p.parts]
    assert len(files) > 100
    long = {
        str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}
