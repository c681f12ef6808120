"""The serving install on its own (``make check-serve-install`` makes it in a venv of its own, as ``make serve``
does on a new machine): its size on disk, that torch and the other extras are absent, and that it builds its
ONNX files, ingests the seed article and answers, from empty caches. Runs with that venv's Python (only the
standard library is used here); exit 1 when a check fails. Writes eval/results/serve-install.json.

    .venv-serve/bin/python eval/serve_install_check.py --venv .venv-serve [--max-mb 600]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Installed only by the extras; the serving venv must hold none of them.
EXTRAS_ONLY = ("torch", "transformers", "sentence_transformers", "spacy", "matplotlib", "ray", "pytest", "sklearn")
QUESTION = "How many troops are in US Forces Korea?"


def size_of(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            if not path.is_symlink():
                total += path.stat().st_size
    return total


def largest_distributions(n: int = 8) -> list[tuple[str, float]]:
    import importlib.metadata as md

    sizes = []
    for dist in md.distributions():
        total = 0
        for f in dist.files or []:
            with contextlib.suppress(OSError):
                total += os.path.getsize(dist.locate_file(f))
        sizes.append((dist.metadata["Name"], round(total / 1e6, 1)))
    return sorted(sizes, key=lambda s: -s[1])[:n]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", required=True, type=Path)
    parser.add_argument("--max-mb", type=float, default=600.0)
    parser.add_argument("--install-seconds", type=float, default=None, help="how long `make install` took")
    parser.add_argument("--out", type=Path, default=Path("eval/results/serve-install.json"))
    args = parser.parse_args()
    failures = []
    size_mb = size_of(args.venv) / 1e6
    if size_mb > args.max_mb:
        failures.append(f"the serving venv takes {size_mb:.0f} MB > {args.max_mb:.0f} MB")
    present = [m for m in EXTRAS_ONLY if importlib.util.find_spec(m) is not None]
    if present:
        failures.append(f"installed although only extras need them: {present}")

    rag = str(args.venv / "bin" / "rag")
    steps = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "XDG_CACHE_HOME": str(Path(tmp) / "cache"), "HF_HUB_OFFLINE": "1"}
        index = str(Path(tmp) / "index")
        answer = None
        for name, command in (
            ("export", [rag, "export"]),
            ("ingest", [rag, "ingest", "seeds/", "--index", index]),
            ("ask", [rag, "ask", QUESTION, "--index", index, "--json"]),
        ):
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            steps[name] = round(time.perf_counter() - started, 1)
            if done.returncode not in (0, 1) or (name != "ask" and done.returncode != 0):
                failures.append(f"`{' '.join(command[1:])}` exited {done.returncode}: {done.stderr.strip()[-500:]}")
                break
            if name == "ask":
                response = json.loads(done.stdout)
                answer = response["answers"][0]["text"] if response["answers"] else None
                if not (response["answers"] or response.get("possible_answers")):
                    failures.append(f"no answer nor possible answer to {QUESTION!r}")
    result = {
        "venv_mb": round(size_mb, 1),
        "limit_mb": args.max_mb,
        "python": sys.version.split()[0],
        "largest_distributions_mb": largest_distributions(),
        "extras_installed": present,
        "install_seconds": args.install_seconds,
        "seconds_from_empty_caches": steps,
        "question": QUESTION,
        "answer": answer,
        "failures": failures,
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
