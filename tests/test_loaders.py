from __future__ import annotations

import json

import pytest

from rag.errors import ValidationError
from rag.loaders import check_document_id, load_paths
from tests.conftest import SEED_DIR


def test_seed_layout_title_and_metadata_text_unchanged(seed_text):
    (doc,) = load_paths([SEED_DIR]).documents
    assert doc.id == "000_9ac6261989c5b459"
    assert doc.title == "US allies Japan, South Korea seek quick rapport with Trump amid security concerns"
    assert doc.published == "November 8, 2024"
    assert doc.meta["byline"] == "Walter Sim and Wendy Teo"
    assert doc.meta["source"] == "The Straits Times"
    assert doc.text == seed_text


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
        + json.dumps({"id": "bad/id", "text": "x"})
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
    assert reasons["image.png"] == "unsupported file type .png"
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


@pytest.mark.parametrize("bad", ["", "a/b", "..", "a b", "x?y", "tab\tid", "a#1", "%2e", "\x00"])
def test_document_ids_with_path_or_control_characters_are_refused(bad):
    with pytest.raises(ValidationError):
        check_document_id(bad)


def test_reasonable_ids_pass():
    for good in ["000_9ac6261989c5b459", "Sky_(United_Kingdom)", "Fresno,_California", "doc-1.v2", "Zürich"]:
        assert check_document_id(good) == good
