"""The HTTP contract, through httpx against the app (Starlette's TestClient is an httpx client over ASGI)."""

from __future__ import annotations

import re
import shutil

import pytest
from fastapi.testclient import TestClient

from rag.engine import Engine
from rag.pipeline import AskSettings, QAPipeline
from service.main import create_app
from tests.conftest import make_settings

SEED_ID = "000_9ac6261989c5b459"
KEY = "s3cret-key"


@pytest.fixture
def engine_factory(tmp_path, seed_index_dir, embedder, heuristic_pipeline):
    # The contract is under test here, not the answer/no-answer decision: always answer.
    p = heuristic_pipeline
    answering = QAPipeline(
        embedder, p.reader, p.calibrator, reader_kind="heuristic", settings=AskSettings(no_answer_threshold=0.0)
    )

    def make(**overrides):
        folder = tmp_path / "index"
        if not folder.exists():
            shutil.copytree(seed_index_dir, folder)
        settings = make_settings(folder, reader="heuristic", **overrides)
        engine = Engine(settings, embedder, answering)
        engine.reload()
        return settings, engine

    return make


@pytest.fixture
def client(engine_factory):
    settings, engine = engine_factory(api_key=KEY)
    return TestClient(create_app(settings, engine=engine))


def assert_error(response, status, *fragments):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"]
    for fragment in fragments:
        assert fragment in body["error"]["message"]


def test_ask_returns_a_cited_span(client):
    r = client.post("/ask", json={"question": "How many troops are in US Forces Korea?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {
        "question",
        "no_answer",
        "answers",
        "no_answer_reason",
        "possible_answers",
        "threshold",
        "threshold_rule",
        "passages",
        "timings_ms",
    }
    assert body["no_answer"] is False and body["no_answer_reason"] is None and body["possible_answers"] == []
    top = body["answers"][0]
    assert "28,500" in top["text"]
    assert 0.0 <= top["score"] <= 1.0
    doc = client.get(f"/documents/{top['document_id']}").json()
    start, end = top["document_offset"]["start"], top["document_offset"]["end"]
    assert doc["text"][start:end] == top["text"]
    c = top["context_offset"]
    assert top["context"][c["start"] : c["end"]] == top["text"]
    assert len(body["passages"]) == 5
    for p in body["passages"]:
        assert doc["text"][p["document_offset"]["start"] : p["document_offset"]["end"]] == p["text"]
    assert body["timings_ms"]["total"] > 0


def test_answers_are_listed_by_score_and_min_score_declines_with_possible_answers(client):
    question = "Who is the Japanese prime minister?"
    body = client.post("/ask", json={"question": question, "max_answers": 3}).json()
    scores = [a["score"] for a in body["answers"]]
    assert len(scores) >= 2 and scores == sorted(scores, reverse=True)
    assert body["threshold"] == 0.0 and body["threshold_rule"] == "RAG_NO_ANSWER_THRESHOLD"

    # Above every score: no answer, the reason, and the same candidates kept apart as possible answers.
    strict = client.post("/ask", json={"question": question, "max_answers": 3, "min_score": 1.0}).json()
    assert strict["no_answer"] is True and strict["answers"] == []
    assert strict["no_answer_reason"] in {"not_covered", "not_stated"}
    assert strict["threshold"] == 1.0 and strict["threshold_rule"] == "min_score of the request"
    assert [a["text"] for a in strict["possible_answers"]] == [a["text"] for a in body["answers"]]
    assert all(a["score"] < 1.0 for a in strict["possible_answers"])

    batch = client.post("/ask/batch", json={"questions": [question], "max_answers": 3, "min_score": 1.0}).json()
    assert batch["results"][0]["possible_answers"] == strict["possible_answers"]
    for bad in (-0.1, 1.5, "high"):
        assert_error(client.post("/ask", json={"question": question, "min_score": bad}), 422, "min_score")
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"no_answer_reason", "possible_answers", "threshold", "threshold_rule"} <= set(
        schema["AskResponse"]["properties"]
    )
    assert "min_score" in schema["AskRequest"]["properties"]


def test_every_answer_carries_the_sentence_that_holds_it(client):
    body = client.post("/ask", json={"question": "Who is the Japanese prime minister?", "max_answers": 3}).json()
    assert body["answers"]
    for a in body["answers"]:
        text = client.get(f"/documents/{a['document_id']}").json()["text"]
        s, o = a["sentence_offset"], a["document_offset"]
        assert text[s["start"] : s["end"]] == a["sentence"]
        assert s["start"] <= o["start"] < o["end"] <= s["end"]
        assert a["sentence"] == a["sentence"].strip() and "\n" not in a["sentence"]
        assert len(a["sentence"]) < len(a["context"]) or a["sentence"] == a["context"].strip()
    schema = client.get("/openapi.json").json()["components"]["schemas"]["AnswerOut"]
    assert {"sentence", "sentence_offset"} <= set(schema["required"])
    assert "document.text[start:end] == sentence" in schema["properties"]["sentence_offset"]["description"]


def test_search_returns_passages_with_offsets(client):
    r = client.get("/search", params={"q": "tariff on imports from China", "k": 3})
    assert r.status_code == 200
    passages = r.json()["passages"]
    assert len(passages) == 3
    assert "60 per cent tariff" in passages[0]["text"]
    assert passages[0]["score"] >= passages[1]["score"] >= passages[2]["score"]


def test_documents_list_and_get(client, seed_text):
    listing = client.get("/documents").json()
    assert listing["count"] == 1 and listing["documents"][0]["id"] == SEED_ID
    assert listing["documents"][0]["chunks"] > 5
    doc = client.get(f"/documents/{SEED_ID}").json()
    assert doc["text"] == seed_text and doc["published"] == "2024-11-08"
    assert doc["meta"]["published_text"] == "November 8, 2024" and doc["meta"]["source"] == "The Straits Times"
    assert_error(client.get("/documents/unknown-id"), 404, "unknown-id")
    assert_error(client.get("/documents/a%20b"), 422, "not allowed")


def test_writes_need_the_key_and_are_visible_to_the_next_query(client):
    new = {
        "documents": [
            {"id": "penguins", "title": "Penguins", "text": "Emperor penguins breed in Antarctica in winter."}
        ]
    }
    assert_error(client.post("/documents", json=new), 401, "Authorization")
    assert_error(client.post("/documents", json=new, headers={"Authorization": "Bearer wrong"}), 403, "not valid")
    auth = {"Authorization": f"Bearer {KEY}"}
    r = client.post("/documents", json=new, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["added"] == ["penguins"] and r.json()["chunks_embedded"] == 1
    hits = client.get("/search", params={"q": "Where do emperor penguins breed?", "k": 1}).json()["passages"]
    assert hits[0]["document_id"] == "penguins"
    again = client.post("/documents", json=new, headers=auth).json()
    assert again["unchanged"] == ["penguins"] and again["chunks_embedded"] == 0
    assert_error(client.delete("/documents/penguins"), 401)
    assert client.delete("/documents/penguins", headers=auth).json()["deleted"] == ["penguins"]
    hits = client.get("/search", params={"q": "Where do emperor penguins breed?", "k": 3}).json()["passages"]
    assert all(h["document_id"] != "penguins" for h in hits)
    assert_error(client.delete("/documents/penguins", headers=auth), 404)


def test_bad_documents_are_reported_and_good_ones_kept(client):
    auth = {"Authorization": f"Bearer {KEY}"}
    batch = {
        "documents": [
            {"id": "ok", "title": "Fine", "text": "A fine document."},
            {"id": "ok", "title": "Dup", "text": "Same id again."},
        ]
    }
    r = client.post("/documents", json=batch, headers=auth).json()
    assert r["added"] == ["ok"] and "duplicate id" in r["skipped"][0]["reason"]
    assert_error(client.post("/documents", json={"documents": [{"text": "   "}]}, headers=auth), 422, "empty")
    assert_error(client.post("/documents", json={"documents": [{"id": "../etc", "text": "x"}]}, headers=auth), 422)
    assert client.get("/documents").json()["count"] == 2


def test_writes_are_refused_without_a_configured_key(engine_factory):
    settings, engine = engine_factory()
    c = TestClient(create_app(settings, engine=engine))
    assert_error(c.post("/documents", json={"documents": [{"text": "x"}]}), 403, "RAG_API_KEY")
    settings, engine = engine_factory(allow_open_writes=True)
    c = TestClient(create_app(settings, engine=engine))
    assert c.post("/documents", json={"documents": [{"text": "Open write."}]}).status_code == 200


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"question": ""}, "question"),
        ({"question": "   \n "}, "empty"),
        ({"question": "x" * 1001}, "at most 1000"),
        ({"question": "bad \x07 bell"}, "control characters"),
        ({"question": 42}, "string"),
        ({}, "field required"),
        ({"question": "ok?", "extra": 1}, "unknown field"),
        ({"question": "ok?", "top_k": 0}, "top_k"),
        ({"question": "ok?", "top_k": 51}, "top_k"),
        ({"question": "ok?", "top_k": "five"}, "top_k"),
    ],
)
def test_bad_questions_get_a_clear_422(client, body, fragment):
    assert_error(client.post("/ask", json=body), 422, fragment)


def test_malformed_bodies(client):
    assert_error(client.post("/ask", content=b"{not json", headers={"content-type": "application/json"}), 422, "JSON")
    assert_error(
        client.post("/ask", content=b'{"question": "\xff\xfe"}', headers={"content-type": "application/json"}),
        400,
        "UTF-8",
    )
    huge = b'{"question": "' + b"a" * (21 * 1024 * 1024) + b'"}'
    assert_error(client.post("/ask", content=huge, headers={"content-type": "application/json"}), 413, "limit")
    assert_error(client.get("/search", params={"q": "x", "k": 0}), 422, "k")
    assert_error(client.get("/search"), 422, "q")


def test_health_and_readiness(client, engine_factory, tmp_path):
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["documents"] == 1
    settings, engine = engine_factory()
    settings = make_settings(tmp_path / "empty", reader="heuristic")
    engine = Engine(settings, engine.embedder, engine.pipeline)
    engine.reload()
    c = TestClient(create_app(settings, engine=engine))
    r = c.get("/readyz")
    assert r.status_code == 503 and "rag ingest" in r.json()["detail"]
    assert_error(c.post("/ask", json={"question": "anything?"}), 503, "index")


def test_openapi_and_page(client):
    schema = client.get("/openapi.json").json()
    assert {"/ask", "/search", "/documents", "/documents/{doc_id}", "/healthz", "/readyz"} <= set(schema["paths"])
    assert client.get("/").headers["content-type"].startswith("text/html")
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn." not in docs.text  # Swagger UI works offline
    for asset in re.findall(r'(?:src|href)="(/static-offline-docs/[^"]+)"', docs.text):
        assert client.get(asset).status_code == 200
    assert "/static-offline-docs/swagger-ui-bundle.js" in docs.text
    metrics = client.get("/metrics").text
    assert "rag_index_chunks" in metrics and "rag_requests_total" in metrics
    assert "# TYPE rag_requests_rejected_total counter" in metrics  # a total is a counter, not a gauge


def test_made_up_methods_and_paths_do_not_grow_the_metrics(client):
    client.get("/metrics")
    before = client.get("/metrics").text
    for i in range(200):
        client.request(f"BREW{i}", "/ask")
        client.get(f"/no-such-path-{i}")
    after = client.get("/metrics").text
    series = [line for line in after.splitlines() if line.startswith("rag_requests_total{")]
    assert len(series) <= len([line for line in before.splitlines() if line.startswith("rag_requests_total{")]) + 3
    assert 'method="other"' in after and 'route="unmatched"' in after
    assert "BREW" not in after and "no-such-path" not in after


def test_a_write_without_the_key_is_refused_before_its_body_is_read(engine_factory):
    import asyncio

    settings, engine = engine_factory(api_key=KEY)
    app = create_app(settings, engine=engine)
    reads = 0

    async def receive():
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 1_000_000, "more_body": True}  # an endless body

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    for headers, status in (([], 401), ([(b"authorization", b"Bearer wrong")], 403)):
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/documents", "raw_path": b"/documents", "query_string": b"", "root_path": "",
            "headers": [(b"content-type", b"application/json"), *headers], "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }  # fmt: skip
        sent.clear()
        asyncio.run(app(scope, receive, send))
        assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == status
    assert reads == 0  # refused on its headers alone


def test_the_documents_list_comes_a_page_at_a_time(client):
    auth = {"Authorization": f"Bearer {KEY}"}
    new = [{"id": f"note-{i:02d}", "title": f"Note {i}", "text": f"Harbour note number {i}."} for i in range(12)]
    assert client.post("/documents", json={"documents": new}, headers=auth).status_code == 200
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 5} | ({"cursor": cursor} if cursor else {})
        body = client.get("/documents", params=params).json()
        assert body["count"] == 13 and len(body["documents"]) <= 5
        seen += [d["id"] for d in body["documents"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == sorted(seen) and len(set(seen)) == 13 and SEED_ID in seen
    assert all(d["chunks"] >= 1 for d in client.get("/documents", params={"limit": 1000}).json()["documents"])
    assert_error(client.get("/documents", params={"limit": 0}), 422, "limit")
    assert_error(client.get("/documents", params={"limit": 1001}), 422, "limit")
