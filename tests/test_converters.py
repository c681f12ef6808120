"""PDF and Word files: the text ingested, page offsets, titles and dates from the files' properties, and files
that are skipped with their reason (scanned, encrypted, broken, too large). The files are built by the tests."""

from __future__ import annotations

import datetime as dt
import zipfile

import pytest

from rag.converters import NO_TEXT_LAYER, docx_to_text, pdf_to_text
from rag.errors import LoadError
from rag.loaders import load_data, load_paths, load_uploads
from rag.types import Document
from tests.sample_files import docx_bytes, encrypted_pdf, pdf_bytes

PAGES = [
    ["Harbour works report", "The quay wall was repaired in spring."],
    ["Ferries", "The new ferry carries 320 passengers."],
    [],  # a page with a picture only
    ["Costs", "The footbridge cost 42 million pounds."],
]
INFO = {"Title": "Glasgow harbour works", "Author": "Ann Lee", "CreationDate": "D:20241108093000+01'00'"}


def test_pdf_text_pages_and_properties(tmp_path):
    (tmp_path / "harbour.pdf").write_bytes(pdf_bytes(PAGES, info=INFO))
    result = load_paths([tmp_path])
    assert result.skipped == []
    (doc,) = result.documents
    assert doc.id == "harbour" and doc.source == str(tmp_path / "harbour.pdf")
    assert doc.text == (
        "Harbour works report\nThe quay wall was repaired in spring.\n\n"
        "Ferries\nThe new ferry carries 320 passengers.\n\n"
        "Costs\nThe footbridge cost 42 million pounds."
    )
    assert doc.title == "Glasgow harbour works"
    assert doc.published == "2024-11-08" and "published_text" not in doc.meta
    assert doc.meta["format"] == "pdf" and doc.meta["byline"] == "Ann Lee"
    starts = doc.meta["page_starts"]
    assert len(starts) == 4 and starts[0] == 0
    assert doc.text[starts[1] :].startswith("Ferries") and doc.text[starts[3] :].startswith("Costs")
    for needle, page in [("quay wall", 1), ("320 passengers", 2), ("42 million", 4)]:
        assert doc.page_at(doc.text.index(needle)) == page
    assert doc.page_at(len(doc.text) - 1) == 4


def test_pdf_without_properties_takes_its_title_and_dates_from_the_text():
    lines = ["Tariffs loom over Asian exporters", "By Walter Sim", "The Straits Times", "Updated Nov 28, 2024, 6:00 am"]
    (doc,) = load_data(pdf_bytes([[*lines, "Body text."]]), "report.pdf").documents
    assert doc.id == "report" and doc.title == "Tariffs loom over Asian exporters"
    assert doc.published == "2024-11-28" and doc.meta["published_text"] == "Updated Nov 28, 2024, 6:00 am"
    assert doc.meta["byline"] == "Walter Sim" and doc.meta["source"] == "The Straits Times"


def test_pdf_pages_without_text_keep_their_place():
    converted = pdf_to_text(pdf_bytes([[], ["Second page."], [], ["Fourth page."]]))
    doc = Document(id="d", title="t", text=converted.text, meta={"page_starts": list(converted.page_starts or ())})
    assert doc.text == "Second page.\n\nFourth page."
    assert doc.page_at(0) == 2 and doc.page_at(doc.text.index("Fourth")) == 4


def test_unreadable_pdfs_are_skipped_with_their_reason_and_the_rest_loaded(tmp_path):
    (tmp_path / "scanned.pdf").write_bytes(pdf_bytes([[], []]))
    (tmp_path / "locked.pdf").write_bytes(encrypted_pdf(pdf_bytes(PAGES), "secret"))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really a PDF\n")
    (tmp_path / "empty.pdf").write_bytes(b"")
    (tmp_path / "good.pdf").write_bytes(pdf_bytes(PAGES))
    result = load_paths([tmp_path])
    assert [d.id for d in result.documents] == ["good"]
    reasons = {name.removeprefix(str(tmp_path) + "/"): why for name, why in result.skipped}
    assert reasons["scanned.pdf"] == NO_TEXT_LAYER == "no text layer (scanned PDF?)"
    assert reasons["locked.pdf"] == "encrypted PDF: it needs a password"
    assert reasons["broken.pdf"].startswith("not a readable PDF (")
    assert reasons["empty.pdf"].startswith("not a readable PDF (")


def test_a_pdf_encrypted_without_a_user_password_is_read():
    converted = pdf_to_text(encrypted_pdf(pdf_bytes(PAGES), ""))
    assert converted.text.startswith("Harbour works report")


def test_the_size_limit_holds_for_pdf_and_word_files(tmp_path):
    (tmp_path / "a.pdf").write_bytes(pdf_bytes(PAGES))
    (tmp_path / "b.docx").write_bytes(docx_bytes(["Some text."]))
    result = load_paths([tmp_path], max_bytes=500)
    assert result.documents == []
    assert [why.startswith("too large") for _, why in result.skipped] == [True, True]


def test_docx_text_title_and_created_date():
    data = docx_bytes(
        [("heading", "Harbour works"), "The quay wall was repaired.", [["Item", "Cost"], ["Footbridge", "£42m"]]],
        author="Ann Lee",
        created=dt.datetime(2024, 11, 8, 9, 30),
    )
    (doc,) = load_data(data, "works.docx").documents
    assert doc.id == "works" and doc.source == "works.docx"
    assert doc.text == "Harbour works\n\nThe quay wall was repaired.\n\nItem | Cost\n\nFootbridge | £42m"
    assert doc.title == "Harbour works"  # no title in the properties: the first heading
    assert doc.published == "2024-11-08" and doc.meta["byline"] == "Ann Lee" and doc.meta["format"] == "docx"
    assert doc.page_at(0) is None and "page_starts" not in doc.meta
    titled = docx_bytes(["Just a paragraph."], title="The real title")
    assert load_data(titled, "t.docx").documents[0].title == "The real title"
    assert load_data(docx_bytes(["Only a paragraph."]), "p.docx").documents[0].title == "Only a paragraph."


def test_broken_and_empty_word_files_are_skipped_with_their_reason(tmp_path):
    ((name, why),) = load_data(b"not a zip", "a.docx").skipped
    assert name == "a.docx" and why.startswith("not a Word file")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("hello.txt", "a zip, but not a Word file")
    (why,) = [why for _, why in load_data((tmp_path / "other.zip").read_bytes(), "b.docx").skipped]
    assert why.startswith("not a readable Word file (")
    assert load_data(docx_bytes([]), "c.docx").skipped == [("c.docx", "no text in the Word file")]


def test_a_docx_that_unzips_past_the_limit_is_refused(tmp_path):
    with pytest.raises(LoadError, match="unzips to"):
        docx_to_text(docx_bytes(["x" * 50_000]), max_bytes=1000)


def test_page_at_ignores_page_starts_that_are_not_ascending_ints():
    for bad in ["0,10", [], [5, 10], [0, "10"], [0, 10, 5], [0, 1.5], [0, True]]:
        assert Document(id="d", title="t", text="x" * 20, meta={"page_starts": bad}).page_at(3) is None
    assert Document(id="d", title="t", text="x" * 20, meta={"page_starts": [0, 10]}).page_at(10) == 2


def test_uploads_take_their_ids_from_the_file_names():
    pdf = pdf_bytes([["A PDF."]])
    result = load_uploads(
        [("a.pdf", pdf), ("a.md", b"# A note\n\nText."), ("folder/b.pdf", pdf), ("b.pdf", pdf), ("c.docx", b"x")]
    )
    assert [d.id for d in result.documents] == ["a.pdf", "a.md", "b"]
    assert [d.source for d in result.documents] == ["a.pdf", "a.md", "b.pdf"]
    assert result.skipped[0] == ("b.pdf", "the same file name was uploaded twice; the first one is kept")
    assert result.skipped[1][0] == "c.docx" and result.skipped[1][1].startswith("not a Word file")


@pytest.mark.parametrize("author", ["python-docx", "Administrator", "Microsoft Office User"])
def test_an_author_a_tool_or_template_wrote_is_not_a_byline(author):
    (doc,) = load_data(docx_bytes(["The quay wall was repaired."], author=author), "w.docx").documents
    assert "byline" not in doc.meta
