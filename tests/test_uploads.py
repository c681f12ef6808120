"""Files uploaded to POST /documents (multipart): PDF and Word documents ingested and asked over HTTP, with the
page in the citation; the key, the size limits and the file types; the JSON body beside it, unchanged."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from rag.engine import Engine
from rag.pipeline import AskSettings, QAPipeline
from service.main import create_app
from tests.conftest import make_settings
from tests.sample_files import docx_bytes, pdf_bytes

KEY = "upload-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
HARBOUR = [
    ["Glasgow harbour works", "The quay wall along the river was repaired in the spring by a local firm."],
    ["Footbridge", "The new Clyde footbridge cost 42 million pounds and opened to walkers in March."],
]


@pytest.fixture
def make_client(tmp_path, seed_index_dir, embedder, heuristic_pipeline):
    """A client over a copy of the seed index; the reader always answers (the contract is under test here)."""
    p = heuristic_pipeline
    answering = QAPipeline(
        embedder, p.reader, p.calibrator, reader_kind="heuristic", settings=AskSettings(no_answer_threshold=0.0)
    )

    def make(**overrides) -> TestClient:
        folder = tmp_path / "index"
        if not folder.exists():
            shutil.copytree(seed_index_dir, folder)
        settings = make_settings(folder, **{"reader": "heuristic", "api_key": KEY, **overrides})
        engine = Engine(settings, embedder, answering)
        engine.reload()
        return TestClient(create_app(settings, engine=engine))

    return make


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


def assert_error(response, status, *fragments):
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    for fragment in fragments:
        assert fragment in message, message


def test_an_uploaded_pdf_is_asked_and_cited_with_its_page(client):
    r = client.post("/documents", files={"files": ("harbour.pdf", pdf_bytes(HARBOUR), PDF)}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["added"] == ["harbour"] and r.json()["skipped"] == []

    body = client.post("/ask", json={"question": "How much did the Clyde footbridge cost?"}).json()
    top = body["answers"][0]
    assert top["document_id"] == "harbour" and "42 million" in top["text"]
    assert top["page"] == 2
    doc = client.get("/documents/harbour").json()
    assert doc["text"][top["document_offset"]["start"] : top["document_offset"]["end"]] == top["text"]
    assert doc["meta"]["format"] == "pdf" and doc["title"] == "Glasgow harbour works"
    page_two = doc["meta"]["page_starts"][1]
    assert doc["text"][page_two:].startswith("Footbridge") and top["document_offset"]["start"] >= page_two
    for passage in body["passages"]:
        expected = None  # the seed article has no pages
        if passage["document_id"] == "harbour":
            expected = 1 if passage["document_offset"]["start"] < page_two else 2
        assert passage["page"] == expected
    assert any(p["document_id"] == "harbour" for p in body["passages"])

    searched = client.get("/search", params={"q": "Clyde footbridge cost", "k": 3}).json()["passages"]
    assert searched[0]["document_id"] == "harbour" and searched[0]["page"] in (1, 2)
    seed = client.post("/ask", json={"question": "How many troops are in US Forces Korea?"}).json()["answers"][0]
    assert seed["document_id"] != "harbour" and seed["page"] is None


def test_several_files_in_one_upload_with_their_ids_and_reasons(client):
    files = [
        ("files", ("notes.docx", docx_bytes([("heading", "Ferry notes"), "The ferry carries 320 passengers."]), DOCX)),
        ("files", ("scan.pdf", pdf_bytes([[]]), PDF)),
        ("files", ("records.jsonl", b'{"id": "r1", "text": "Record one.", "source": "Reuters"}\n', "text/plain")),
        ("files", ("a.md", b"# A\n\nMarkdown.", "text/markdown")),
        ("files", ("a.txt", b"A\n\nText.", "text/plain")),
    ]
    r = client.post("/documents", files=files, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["added"] == ["notes", "r1", "a.md", "a.txt"]
    assert r.json()["skipped"] == [{"item": "scan.pdf", "reason": "no text layer (scanned PDF?)"}]
    notes = client.get("/documents/notes").json()
    assert notes["title"] == "Ferry notes" and notes["text"] == "Ferry notes\n\nThe ferry carries 320 passengers."
    # An upload of which nothing could be ingested is a 422 with the reasons, not a 200 that added nothing.
    r = client.post("/documents", files=[("files", ("scan.pdf", pdf_bytes([[]]), PDF))], headers=AUTH)
    assert_error(r, 422, "no file could be ingested", "scan.pdf", "no text layer")
    assert r.json()["error"]["details"] == [{"item": "scan.pdf", "reason": "no text layer (scanned PDF?)"}]
    assert client.get("/documents/r1").json()["meta"] == {"source": "Reuters"}


def test_uploads_need_the_key(make_client):
    client = make_client()
    files = {"files": ("harbour.pdf", pdf_bytes(HARBOUR), PDF)}
    assert_error(client.post("/documents", files=files), 401, "Authorization")
    assert_error(client.post("/documents", files=files, headers={"Authorization": "Bearer nope"}), 403)
    closed = make_client(api_key=None)
    assert_error(closed.post("/documents", files=files), 403, "writes are disabled")
    assert client.get("/documents").json()["count"] == 1  # nothing was written


def test_unsupported_types_are_refused_naming_the_supported_ones(client):
    files = [("files", ("harbour.pdf", pdf_bytes(HARBOUR), PDF)), ("files", ("sheet.xlsx", b"PK\x03\x04", "x/y"))]
    r = client.post("/documents", files=files, headers=AUTH)
    assert_error(r, 422, "sheet.xlsx", "unsupported file type .xlsx", ".pdf", ".docx", ".md")
    assert_error(client.post("/documents", files={"files": ("", b"x", PDF)}, headers=AUTH), 422)
    assert_error(
        client.post("/documents", files={"files": ("README", b"x", "text/plain")}, headers=AUTH), 422, "(none)"
    )
    assert client.get("/documents").json()["count"] == 1  # the PDF beside the refused file was not ingested


def test_a_multipart_body_without_files_is_a_422(client):
    r = client.post(
        "/documents", data={"other": "x"}, files={"nothing": ("a.txt", b"A\n\nx", "text/plain")}, headers=AUTH
    )
    assert_error(r, 422, "files")
    r = client.post("/documents", data={"files": "not a file"}, files={"x": ("a.txt", b"", "text/plain")}, headers=AUTH)
    assert_error(r, 422, "files")


def test_the_request_size_limit_holds_for_uploads(make_client):
    client = make_client(max_request_bytes=4096)
    big = {"files": ("big.pdf", pdf_bytes([["word " * 200] for _ in range(10)]), PDF)}
    assert_error(client.post("/documents", files=big, headers=AUTH), 413, "limit")

    # Without a Content-Length the limit is met while the body streams in: still a 413, not a parse error.
    request = client.build_request("POST", "/documents", files=big, headers=AUTH)
    chunks = [request.read()[i : i + 1000] for i in range(0, len(request.read()), 1000)]
    headers = {"content-type": request.headers["content-type"], **AUTH}
    assert_error(client.post("/documents", content=iter(chunks), headers=headers), 413, "limit")
    assert client.get("/documents").json()["count"] == 1


def test_the_json_body_still_works_and_normalises_published(client):
    doc = {"id": "p1", "text": "Penguins breed in winter.", "published": "28 Nov 2024", "source": "BBC"}
    r = client.post("/documents", json={"documents": [doc]}, headers=AUTH)
    assert r.status_code == 200 and r.json()["added"] == ["p1"]
    stored = client.get("/documents/p1").json()
    assert stored["published"] == "2024-11-28"
    assert stored["meta"] == {"source": "BBC", "published_text": "28 Nov 2024"}
    assert_error(client.post("/documents", json={"documents": [{"text": "x", "pages": 1}]}, headers=AUTH), 422)
    r = client.post("/documents", content=b'{"documents": [', headers={"content-type": "application/json", **AUTH})
    assert_error(r, 422, "not valid JSON")
