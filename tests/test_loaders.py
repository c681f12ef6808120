from __future__ import annotations

import json

import pytest

from rag.document_ids import check_document_id, path_id, slug_id
from rag.errors import ValidationError
from rag.loaders import load_paths
from rag.text_documents import markdown_title, parse_text_document
from tests.conftest import SEED_DIR


def test_seed_layout_title_and_metadata_text_unchanged(seed_text):
    (doc,) = load_paths([SEED_DIR]).documents
    assert doc.id == "000_9ac6261989c5b459"
    assert doc.title == "US allies Japan, South Korea seek quick rapport with Trump amid security concerns"
    assert doc.published == "2024-11-08" and doc.meta["published_text"] == "November 8, 2024"
    assert doc.meta["byline"] == "Walter Sim and Wendy Teo"
    assert doc.meta["source"] == "The Straits Times"
    assert doc.text == seed_text


def test_published_is_an_iso_date_and_source_the_publisher(tmp_path):
    (tmp_path / "page.html").write_text(
        '<html><head><meta property="og:site_name" content="The Herald">'
        '<meta name="publisher" content="Not this one"></head><body><header><time datetime="2024-11-28T06:00:00+08:00">'
        "28 Nov</time></header><article><h1>Title</h1><p>Body.</p></article></body></html>",
        encoding="utf-8",
    )
    (tmp_path / "meta.html").write_text(
        '<html><head><meta name="publisher" content="Daily Planet"><meta property="article:published_time" '
        'content="2024-03-01"></head><body><article><time datetime="1999-01-01">x</time><p>Body.</p></article>'
        "</body></html>",
        encoding="utf-8",
    )
    records = [
        {"id": "r1", "text": "One.", "published": "Updated Nov 28, 2024, 6:00 am", "source": "Reuters"},
        {"id": "r2", "text": "Two.", "published": "2024-12-01", "meta": {"source": "old"}, "source": "AP"},
        {"id": "r3", "text": "Three.", "published": "last Tuesday"},
        {"id": "r4", "text": "Four.", "published": "  "},
    ]
    (tmp_path / "records.json").write_text(json.dumps(records), encoding="utf-8")
    (tmp_path / "bad.jsonl").write_text(json.dumps({"id": "r5", "text": "Five.", "source": 5}) + "\n")
    (tmp_path / "post.md").write_text("---\ntitle: Post\ndate: 2024-05-02\n---\n# Post\n\nBody.\n", encoding="utf-8")
    result = load_paths([tmp_path])
    docs = {d.id: d for d in result.documents}
    assert docs["post"].published == "2024-05-02" and "published_text" not in docs["post"].meta
    assert (docs["page"].published, docs["page"].meta["source"]) == ("2024-11-28", "The Herald")
    assert docs["page"].meta["published_text"] == "2024-11-28T06:00:00+08:00"
    assert (docs["meta"].published, docs["meta"].meta["source"]) == ("2024-03-01", "Daily Planet")
    assert "published_text" not in docs["meta"].meta
    assert docs["r1"].published == "2024-11-28" and docs["r1"].meta == {
        "source": "Reuters",
        "published_text": "Updated Nov 28, 2024, 6:00 am",
    }
    assert docs["r1"].source == str(tmp_path / "records.json")  # the file, as before
    assert docs["r2"].published == "2024-12-01" and docs["r2"].meta == {"source": "AP"}
    assert docs["r3"].published is None and docs["r3"].meta == {"published_text": "last Tuesday"}
    assert docs["r4"].published is None and docs["r4"].meta == {}
    assert result.skipped == [(f"{tmp_path / 'bad.jsonl'} line 1", "field 'source' must be a string")]


def test_markdown_html_json_jsonl_and_squad(tmp_path):
    (tmp_path / "a.md").write_text("# Heading title\n\nBody text here.\n", encoding="utf-8")
    (tmp_path / "b.html").write_text(
        "<html><head><title>Page</title><script>var x=1;</script></head><body><nav>menu</nav>"
        "<article><h1>Real title</h1><p>First <b>para</b>.</p><p>Second para.</p></article>"
        "<footer>foot</footer></body></html>",
        encoding="utf-8",
    )
    (tmp_path / "c.json").write_text(json.dumps([{"id": "r1", "title": "R1", "text": "Record one."}]), encoding="utf-8")
    (tmp_path / "d.jsonl").write_text(
        json.dumps({"title": "No id", "text": "Derived id text.", "url": "http://x", "meta": {"k": 1}}) + "\n",
        encoding="utf-8",
    )
    squad = {
        "version": "v2.0",
        "data": [
            {
                "title": "Some_Article",
                "paragraphs": [{"context": "Para one.", "qas": []}, {"context": "Para two.", "qas": []}],
            }
        ],
    }
    (tmp_path / "whatever-name.json").write_text(json.dumps(squad), encoding="utf-8")
    result = load_paths([tmp_path])
    assert result.skipped == []
    docs = {d.id: d for d in result.documents}
    assert docs["a"].title == "Heading title"
    assert docs["b"].title == "Real title"
    assert docs["b"].text == "Real title\n\nFirst para.\n\nSecond para."
    assert docs["r1"].text == "Record one."
    derived = [d for d in docs.values() if d.title == "No id"][0]
    assert derived.id.startswith("doc-") and derived.meta == {"k": 1} and derived.url == "http://x"
    article = docs["Some_Article"]
    assert article.text == "Para one.\n\nPara two."
    starts = article.meta["paragraph_starts"]
    assert article.text[starts[1] : starts[1] + 9] == "Para two."


def test_content_derived_id_is_stable(tmp_path):
    (tmp_path / "x.jsonl").write_text(json.dumps({"title": "T", "text": "Same text."}) + "\n")
    first = load_paths([tmp_path]).documents[0].id
    second = load_paths([tmp_path]).documents[0].id
    assert first == second


def test_bad_files_are_reported_by_name_and_the_rest_loaded(tmp_path):
    (tmp_path / "good.txt").write_text("Good title\n\nGood body.", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("   \n", encoding="utf-8")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n")
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "lines.jsonl").write_text(
        json.dumps({"id": "ok1", "text": "fine"})
        + "\n{oops\n"
        + json.dumps({"id": "bad/../id", "text": "x"})
        + "\n"
        + json.dumps({"id": "no-text"})
        + "\n",
        encoding="utf-8",
    )
    result = load_paths([tmp_path, tmp_path / "missing.txt"])
    assert sorted(d.id for d in result.documents) == ["good", "ok1"]
    reasons = {name.replace(str(tmp_path) + "/", ""): why for name, why in result.skipped}
    assert reasons["empty.txt"] == "empty"
    assert reasons["binary.txt"].startswith("binary file")
    assert reasons["latin1.txt"].startswith("not valid UTF-8")
    assert reasons["image.png"].startswith("unsupported file type .png; supported: ")
    assert ".md" in reasons["image.png"] and ".jsonl" in reasons["image.png"]
    assert reasons["broken.json"].startswith("invalid JSON at line 1")
    assert reasons["lines.jsonl line 2"].startswith("invalid JSON")
    assert "not allowed" in reasons["lines.jsonl line 3"]
    assert "'text' must be a string" in reasons["lines.jsonl line 4"]
    assert reasons["missing.txt"] == "no such file or folder"


def test_size_limit(tmp_path):
    (tmp_path / "big.txt").write_text("Title\n\n" + "word " * 1000, encoding="utf-8")
    result = load_paths([tmp_path], max_bytes=100)
    assert result.documents == []
    assert "too large" in result.skipped[0][1]


@pytest.mark.parametrize(
    "bad", ["", "..", "a b", "x?y", "tab\tid", "a#1", "%2e", "\x00", "a\\b", "/a", "a/", "a//b", "a/../b", "./a"]
)
def test_document_ids_with_path_or_control_characters_are_refused(bad):
    with pytest.raises(ValidationError):
        check_document_id(bad)


def test_reasonable_ids_pass():
    for good in ["000_9ac6261989c5b459", "Sky_(United_Kingdom)", "Fresno,_California", "doc-1.v2", "Zürich",
                 "tutorial/middleware", "a/b.md", "..x/y..", "x" * 200]:  # fmt: skip
        assert check_document_id(good) == good


# ---------------------------------------------------------------------------------------------- ids from paths

SECTIONS = ["tutorial", "advanced", "advanced/security", "how-to", "deployment", "reference"]
NAMES = ["index", "middleware", "security", "testing", "first-steps", "settings", "dependencies", "cors",
         "response-model", "body", "query-params", "path-params", "bigger-applications", "background-tasks",
         "debugging", "events", "templates", "websockets", "sub-applications", "behind-a-proxy"]  # fmt: skip


def write_docs_tree(root):
    """124 Markdown files; every name occurs in several folders, as in a documentation site."""
    files = [f"{section}/{name}.md" for section in SECTIONS for name in NAMES] + ["index.md", "help.md",
             "features.md", "tutorial/index/index.md"]  # fmt: skip
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {rel} {{ #{path.stem} }}\n\nText of {rel}.\n", encoding="utf-8")
    return files


def test_files_of_one_name_in_different_folders_each_keep_their_document(tmp_path):
    files = write_docs_tree(tmp_path / "docs")
    assert len(files) == 124
    result = load_paths([tmp_path / "docs"])
    assert result.skipped == []
    assert len(result.documents) == 124
    docs = {d.id: d for d in result.documents}
    assert set(docs) == {rel.removesuffix(".md") for rel in files}
    assert (
        docs["tutorial/middleware"].text
        == "# tutorial/middleware.md { #middleware }\n\nText of tutorial/middleware.md.\n"
    )
    assert docs["advanced/security/index"].source == str(tmp_path / "docs" / "advanced/security/index.md")
    for doc in result.documents:
        assert check_document_id(doc.id) == doc.id


def test_a_file_named_directly_keeps_its_stem_and_top_level_files_keep_their_ids(tmp_path):
    write_docs_tree(tmp_path)
    (doc,) = load_paths([tmp_path / "advanced" / "middleware.md"]).documents
    assert doc.id == "middleware"
    assert {d.id for d in load_paths([tmp_path]).documents} >= {"index", "help", "features"}


def test_one_stem_with_two_suffixes_keeps_both_with_their_suffix(tmp_path):
    (tmp_path / "a.md").write_text("# A markdown\n\nOne.", encoding="utf-8")
    (tmp_path / "a.txt").write_text("A text\n\nTwo.", encoding="utf-8")
    (tmp_path / "b.md").write_text("# B\n\nThree.", encoding="utf-8")
    result = load_paths([tmp_path])
    assert result.skipped == []
    assert {d.id: d.title for d in result.documents} == {"a.md": "A markdown", "a.txt": "A text", "b": "B"}


def test_two_folders_with_the_same_file_refuse_the_second_naming_both(tmp_path):
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "index.md").write_text(f"# {folder}\n\nBody.", encoding="utf-8")
    (tmp_path / "two" / "other.md").write_text("# Other\n\nBody.", encoding="utf-8")
    result = load_paths([tmp_path / "one", tmp_path / "two"])
    assert {d.id: d.title for d in result.documents} == {"index.md": "one", "other": "Other"}
    ((where, why),) = result.skipped
    assert where == str(tmp_path / "two" / "index.md")
    assert str(tmp_path / "one" / "index.md") in why and "'index.md'" in why


def test_a_file_reached_twice_is_loaded_once(tmp_path):
    (tmp_path / "a.md").write_text("# A\n\nBody.", encoding="utf-8")
    result = load_paths([tmp_path, tmp_path / "a.md", tmp_path])
    assert result.skipped == [] and [d.id for d in result.documents] == ["a"]


def test_a_replaced_record_is_reported_as_the_dropped_one_naming_the_kept_one(tmp_path):
    (tmp_path / "1.jsonl").write_text(json.dumps({"id": "r", "text": "old"}) + "\n", encoding="utf-8")
    (tmp_path / "2.jsonl").write_text(
        json.dumps({"id": "r", "text": "new"}) + "\n" + json.dumps({"id": "r", "text": "newest"}) + "\n",
        encoding="utf-8",
    )
    result = load_paths([tmp_path])
    assert [(d.id, d.text) for d in result.documents] == [("r", "newest")]
    first, second = result.skipped
    assert first == (str(tmp_path / "1.jsonl"), f"duplicate id 'r'; replaced by {tmp_path / '2.jsonl'}")
    assert second == (str(tmp_path / "2.jsonl"), "duplicate id 'r'; replaced by a later record in the same file")


def test_path_ids_are_valid_ids():
    from pathlib import PurePath

    assert path_id(PurePath("tutorial/middleware.md")) == "tutorial/middleware"
    assert path_id(PurePath("tutorial/middleware.md"), suffix=True) == "tutorial/middleware.md"
    assert path_id(PurePath("my docs/what? #1.md")) == "my_docs/what___1"
    assert check_document_id(path_id(PurePath("d" * 150, "e" * 150 + ".md"))) == "d" * 150 + "/" + "e" * 49
    assert path_id(PurePath("d" * 199, "e.md")) == "d" * 199  # cut at the slash: no empty last part
    assert slug_id("a/b") == "a_b" and slug_id("..") == "doc"


def test_ingest_command_indexes_every_file_of_a_tree(tmp_path, embedder):
    from typer.testing import CliRunner

    from cli import app
    from rag.engine import Engine
    from tests.conftest import make_settings

    write_docs_tree(tmp_path / "docs")
    out = CliRunner().invoke(app, ["ingest", str(tmp_path / "docs"), "--index", str(tmp_path / "index")])
    assert out.exit_code == 0, out.output
    printed = " ".join(out.output.split())
    assert "124 documents" in printed and "added 124" in printed and "skipped 0" in printed
    engine = Engine(make_settings(tmp_path / "index"), embedder)
    engine.reload()
    doc = engine.snapshot.get("advanced/security/middleware")  # a '/' in an id survives the store
    assert doc.text.startswith("# advanced/security/middleware.md")
    assert {c.doc_id for c in engine.snapshot.chunks_of(doc.id)} == {doc.id}


# ---------------------------------------------------------------------------------------------- Markdown titles


@pytest.mark.parametrize(
    ("line", "title"),
    [
        ("# Security { #security }", "Security"),
        ("## Use `Depends` with **yield** { #depends .big }", "Use Depends with yield"),
        ("# The `__init__` method", "The __init__ method"),
        ("# [FastAPI](https://fastapi.tiangolo.com) *rocks* ##", "FastAPI rocks"),
        ("# ![logo](logo.png) Project <sup>beta</sup>", "logo Project beta"),
        ("# Title {: #t }", "Title"),
        ("# C# and F#", "C# and F#"),
        ("# snake_case_name", "snake_case_name"),
        ('<div class="termy">', ""),
    ],
)
def test_markdown_titles_are_plain_text(line, title):
    assert markdown_title(line) == title


def test_markdown_title_is_clean_and_the_text_is_the_file_unchanged(tmp_path):
    raw = (
        '<p align="center"><img src="logo.png"></p>\n\n# **Security** { #security }\n\n'
        "Use `OAuth2PasswordBearer` here.\n"
    )
    (tmp_path / "security.md").write_text(raw, encoding="utf-8")
    (tmp_path / "front.md").write_text("---\ntitle: 'Front title'\nauthor: x\n---\n# Other\n\nBody.\n")
    docs = {d.id: d for d in load_paths([tmp_path]).documents}
    assert docs["security"].title == "Security"
    assert docs["security"].text == raw
    assert docs["front"].title == "Front title"
    assert docs["front"].text.startswith("---\ntitle:")


def test_a_wrapped_line_that_starts_with_by_is_not_a_byline():
    text = (
        "The Cargo Book\n"
        "Cargo downloads your dependencies and makes them available, and you share your work\n"
        "by publishing your own packages. The crate registry at\n"
        "crates.io holds them.\n"
    )
    doc = parse_text_document(text, doc_id="cargo", source=None, markdown=True)
    assert "byline" not in doc.meta
    signed = parse_text_document("Title\nBy J. K. Rowling & Tom Smith\n\nText.", doc_id="x", source=None)
    assert signed.meta["byline"] == "J. K. Rowling & Tom Smith"
