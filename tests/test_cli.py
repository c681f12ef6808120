"""The ``rag`` command's errors: said once, clearly, with the documented exit code, and nothing written."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cli import EXIT_INDEX, EXIT_PROBLEMS, app
from rag.loaders import SUPPORTED_SUFFIXES

runner = CliRunner()


def said(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines at the terminal width


def test_ask_without_an_index_says_so_once_and_fast(tmp_path):
    # A real process: the engine's log line reached stderr there, beside the CLI's own message.
    missing = tmp_path / "nope"
    r = subprocess.run(
        [sys.executable, "-c", "from cli import main; main()", "ask", "x", "--index", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == EXIT_INDEX, r.stderr
    assert said(r.stderr).count("no index in") == 1, r.stderr
    assert "rag ingest" in said(r.stderr) and "Traceback" not in r.stderr
    assert not missing.exists()


def test_a_broken_index_is_reported_once(tmp_path, caplog):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "CURRENT").write_text("gen-000001\n")  # points at a generation that is not there
    with caplog.at_level(logging.ERROR):
        r = runner.invoke(app, ["ask", "x", "--index", str(broken), "--reader", "heuristic"])
    assert r.exit_code == EXIT_INDEX, r.output
    assert said(r.stderr).count("which is not a generation here") == 1, r.stderr
    assert "rebuild it with: rag ingest" in said(r.stderr)
    assert not [rec for rec in caplog.records if rec.name == "rag.engine"], "the CLI reports it; no second copy"


def test_unsupported_files_alone_write_nothing_and_say_what_is_supported(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "sheet.xlsx").write_bytes(b"PK\x03\x04")
    (docs / "report.pdf").write_bytes(b"%PDF-1.7 not really")
    (docs / "empty.txt").write_text("  \n")
    index = tmp_path / "index"
    r = runner.invoke(app, ["ingest", str(docs), "--index", str(index)])
    assert r.exit_code == EXIT_PROBLEMS, r.output
    message = said(r.stderr)
    assert "sheet.xlsx: unsupported file type .xlsx" in message
    assert "report.pdf: not a readable PDF" in message
    assert "empty.txt: empty" in message
    assert f"no usable documents found in {docs} (3 skipped); nothing was written" in message
    assert all(suffix in message for suffix in SUPPORTED_SUFFIXES)
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert not index.exists(), "no empty index is created"


def test_a_missing_path_is_not_an_empty_success(tmp_path):
    r = runner.invoke(app, ["ingest", str(tmp_path / "absent"), "--index", str(tmp_path / "index")])
    assert r.exit_code == EXIT_PROBLEMS, r.output
    assert "no such file or folder" in said(r.stderr) and "no usable documents" in said(r.stderr)
    assert not (tmp_path / "index").exists()


@pytest.mark.parametrize("flag", ["--rebuild", "--sync"])
def test_nothing_usable_leaves_an_existing_index_alone(tmp_path, seed_index_dir, flag):
    # --rebuild would remove the index and --sync would delete every document: neither may run on nothing.
    index = tmp_path / "index"
    shutil.copytree(seed_index_dir, index)
    before = sorted(p.relative_to(index) for p in index.rglob("*"))
    (tmp_path / "only.pdf").write_bytes(b"%PDF")
    r = runner.invoke(app, ["ingest", str(tmp_path / "only.pdf"), "--index", str(index), flag])
    assert r.exit_code == EXIT_PROBLEMS, r.output
    assert "no usable documents" in said(r.stderr)
    assert sorted(p.relative_to(index) for p in index.rglob("*")) == before


def test_verify_hashes_every_byte_and_names_the_file_that_differs(tmp_path, seed_index_dir):
    index = tmp_path / "index"
    shutil.copytree(seed_index_dir, index)
    r = runner.invoke(app, ["verify", "--index", str(index)])
    assert r.exit_code == 0 and "every file matches its manifest" in said(r.stderr)
    faiss_file = next((index / "segments").glob("seg-*/dense.faiss"))
    data = bytearray(faiss_file.read_bytes())
    data[len(data) // 2] ^= 1  # same size, one bit off
    faiss_file.write_bytes(bytes(data))
    r = runner.invoke(app, ["verify", "--index", str(index)])
    assert r.exit_code == EXIT_INDEX
    assert "dense.faiss does not match its manifest's checksum" in said(r.stderr)


def test_ask_prints_the_sentence_that_holds_the_answer(seed_index_dir):
    r = runner.invoke(app, ["ask", "How many troops are in US Forces Korea?", "--index", str(seed_index_dir)])
    assert r.exit_code == 0, r.output
    out = " ".join(said(r.stdout).split())
    assert "28,500" in out
    assert "describing the country as a “money machine”." in out  # the sentence, not the whole passage
    assert "1.52 trillion won" not in out  # the next sentence of the passage is not printed
    assert re.search(r"\[[^\]\s]+\], characters \d+–\d+", out)  # the citation's [document id] is printed


def test_ask_min_score_declines_and_shows_what_came_close(seed_index_dir):
    question = "How many troops are in US Forces Korea?"
    r = runner.invoke(app, ["ask", question, "--index", str(seed_index_dir), "--min-score", "1.0"])
    assert r.exit_code == EXIT_PROBLEMS, r.output
    out = said(r.stdout)
    assert "No answer:" in out and "Unconfirmed 28,500" in out and "below 1.00" in out
    r = runner.invoke(app, ["ask", question, "--index", str(seed_index_dir), "--min-score", "0", "--json"])
    body = json.loads(r.stdout)
    assert body["threshold"] == 0.0 and body["threshold_rule"] == "min_score of the request" and body["answers"]
    assert runner.invoke(app, ["ask", question, "--index", str(seed_index_dir), "--min-score", "2"]).exit_code == 2


def test_optimize_merges_into_one_segment_and_drops_deleted_documents(tmp_path, seed_index_dir):
    index = tmp_path / "index"
    shutil.copytree(seed_index_dir, index)
    docs = tmp_path / "docs"
    docs.mkdir()
    notes = {
        "ferry": "The night ferry to Arran was cancelled.",
        "school": "Hillhead adds 300 places.",
        "bridge": "The Clyde footbridge cost 42 million dollars.",
        "market": "The Barras market opens on Saturdays.",
        "tower": "The Science Centre tower turns with the wind.",
    }
    for name, text in notes.items():
        (docs / f"{name}.txt").write_text(text)
    assert runner.invoke(app, ["ingest", str(docs), "--index", str(index)]).exit_code == 0
    # One of five one-chunk documents: under the share of deleted chunks at which a merge rewrites the segment.
    r = runner.invoke(app, ["ingest", str(docs / "school.txt"), "--index", str(index), "--delete", "ferry"])
    assert r.exit_code == 0, r.stderr
    r = runner.invoke(app, ["optimize", "--index", str(index)])
    assert r.exit_code == 0, r.stderr
    assert re.search(r"-> 1 \(\d+ chunks; [1-9]\d* chunks of deleted documents dropped\)", said(r.stdout + r.stderr))
    r = runner.invoke(app, ["ask", "What was cancelled?", "--index", str(index), "--reader", "heuristic"])
    assert "ferry" not in r.stdout.lower()

    # The deleted text is still in the files an earlier commit lists, until --purge removes them.
    def holding(word: bytes) -> list[str]:
        return [str(p.relative_to(index)) for p in index.rglob("*") if p.is_file() and word in p.read_bytes()]

    assert holding(b"Arran")
    r = runner.invoke(app, ["optimize", "--purge", "--index", str(index)])
    assert r.exit_code == 0 and "earlier commits and their files removed" in said(r.stdout)
    assert holding(b"Arran") == [] and len(list(index.glob("gen-*"))) == 1
    r = runner.invoke(app, ["ask", "How much did the Clyde footbridge cost?", "--index", str(index)])
    assert r.exit_code == 0 and "42 million" in r.stdout


def test_serve_refuses_open_writes_on_a_network_address_unless_asked_twice(tmp_path, monkeypatch):
    from tests.conftest import make_settings

    monkeypatch.setenv("RAG_ALLOW_OPEN_WRITES", "true")
    r = runner.invoke(app, ["serve", "--index", str(tmp_path), "--host", "0.0.0.0", "--port", "8765"])
    assert r.exit_code == 2 and "RAG_ALLOW_OPEN_WRITES_ON_NETWORK" in r.output
    assert make_settings(tmp_path, allow_open_writes=True, host="127.0.0.1").open_writes_refusal() is None
    assert make_settings(tmp_path, allow_open_writes=True, host="0.0.0.0", api_key="k").open_writes_refusal() is None
    twice = make_settings(tmp_path, allow_open_writes=True, allow_open_writes_on_network=True, host="0.0.0.0")
    assert twice.open_writes_refusal() is None


def test_skipped_files_are_one_summary_line_and_exit_0_unless_strict(tmp_path):
    docs, index = tmp_path / "docs", tmp_path / "index"
    docs.mkdir()
    (docs / "guide.md").write_text("# Guide\n\nThe harbour opens at six.")
    for i in range(5):
        (docs / f"figure-{i}.png").write_bytes(b"\x89PNG\r\n")
    r = runner.invoke(app, ["ingest", str(docs), "--index", str(index)])
    assert r.exit_code == 0, r.output
    assert r.stderr.count("skipped ") == 1  # one line, not one per file
    assert "skipped 5 files (5 unsupported file type .png)" in said(r.stderr)
    r = runner.invoke(app, ["ingest", str(docs), "--index", str(index), "--verbose", "--strict"])
    assert r.exit_code == EXIT_PROBLEMS
    assert said(r.stderr).count("skipped") >= 5 and "figure-3.png" in said(r.stderr)


def test_ask_url_asks_a_running_service_and_prints_what_it_prints_locally(tmp_path, seed_index_dir):
    from service.main import create_app
    from tests.conftest import make_settings, serve_in_thread

    folder = tmp_path / "index"
    shutil.copytree(seed_index_dir, folder)
    with serve_in_thread(create_app(make_settings(folder)), ready_timeout=120) as base:
        question = "How many troops are in US Forces Korea?"
        remote = runner.invoke(app, ["ask", question, "--url", base])
        local = runner.invoke(app, ["ask", question, "--index", str(folder)])
        assert remote.exit_code == local.exit_code == 0, remote.output
        strip = lambda text: re.sub(r"\{.*\}", "", said(text))  # noqa: E731 (the timings differ)
        assert "28,500" in said(remote.stdout) and strip(remote.stdout) == strip(local.stdout)
        declined = runner.invoke(app, ["ask", question, "--url", base, "--min-score", "1"])
        assert declined.exit_code == EXIT_PROBLEMS and "Unconfirmed 28,500" in said(declined.stdout)
    down = runner.invoke(app, ["ask", "x", "--url", base])
    assert down.exit_code == 5 and "cannot reach the service" in said(down.stderr)
