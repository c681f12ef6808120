"""Filters at the edges (service/routers, cli/): POST and GET /search, /ask and /documents take the same filters
(rag/filters.py) and name a bad one in a 422; the OpenAPI schema documents them; the CLI takes them as flags."""

from __future__ import annotations

import json
import shutil

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

SEED_ID = "000_9ac6261989c5b459"  # published 2024-11-08 by The Straits Times
ARTICLES = [
    {
        "id": "harbour",
        "title": "Harbour expansion",
        "text": "The council approved the harbour expansion. Work starts in May, the harbour master said.",
        "published": "2024-10-02",
        "meta": {"source": "Reuters", "section": "local"},
    },
    {
        "id": "rail",
        "title": "Rail strike",
        "text": "Train drivers walked out on Tuesday. Talks with the rail company resume on Friday at the harbour.",
        "published": "15 December 2024",
        "meta": {"source": "CNA", "section": "transport"},
    },
    {
        "id": "budget",
        "title": "City budget",
        "text": "The city budget for schools grew by 12 per cent while the harbour fund shrank.",
        "meta": {"section": "local"},
    },
]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory, seed_index_dir, embedder):
    """The seed index plus three short dated articles (built once; the tests only read it)."""
    from rag.engine import Engine
    from rag.records import document_from_record
    from tests.conftest import make_settings

    folder = tmp_path_factory.mktemp("filters") / "index"
    shutil.copytree(seed_index_dir, folder)
    engine = Engine(make_settings(folder), embedder)
    engine.reload()
    engine.upsert([document_from_record(a, where=a["id"]) for a in ARTICLES])
    return folder


@pytest.fixture(scope="module")
def client(corpus_dir, embedder, heuristic_pipeline):
    from rag.engine import Engine
    from rag.pipeline import AskSettings, QAPipeline
    from service.main import create_app
    from tests.conftest import make_settings

    p = heuristic_pipeline  # the filters are under test, not the answer/no-answer decision: always answer
    answering = QAPipeline(
        embedder, p.reader, p.calibrator, reader_kind="heuristic", settings=AskSettings(no_answer_threshold=0.0)
    )
    settings = make_settings(corpus_dir, reader="heuristic")
    engine = Engine(settings, embedder, answering)
    engine.reload()
    return TestClient(create_app(settings, engine=engine))


def documents_of(response) -> set[str]:
    assert response.status_code == 200, response.text
    return {p["document_id"] for p in response.json()["passages"]}


def error_message(response) -> str:
    assert response.status_code == 422, response.text
    return response.json()["error"]["message"]


def test_post_search_takes_the_ask_body_with_filters_and_k(client):
    body = {"question": "harbour", "k": 20}
    assert documents_of(client.post("/search", json=body)) == {"harbour", "rail", "budget", SEED_ID}
    only = client.post("/search", json={**body, "filters": {"document_ids": ["budget", "absent"]}})
    assert documents_of(only) == {"budget"}
    november = {"published_from": "2024-11-01", "published_to": "2024-11-30"}
    assert documents_of(client.post("/search", json={**body, "filters": november})) == {SEED_ID}
    local = {"meta": {"section": "local"}, "source": "reuters"}
    assert documents_of(client.post("/search", json={**body, "filters": local})) == {"harbour"}
    nothing = client.post("/search", json={**body, "filters": {"published_from": "2030-01-01"}})
    assert documents_of(nothing) == set()
    assert len(client.post("/search", json={**body, "k": 2}).json()["passages"]) == 2


def test_get_search_filters_by_repeated_doc_and_a_date_range(client):
    q = {"q": "harbour", "k": 20}
    assert documents_of(client.get("/search", params={**q, "doc": ["harbour", "rail"]})) == {"harbour", "rail"}
    assert documents_of(client.get("/search", params={**q, "since": "2024-11-09"})) == {"rail"}
    assert documents_of(client.get("/search", params={**q, "until": "2024-11-08"})) == {"harbour", SEED_ID}
    assert documents_of(client.get("/search", params={**q, "since": "2024-10-01", "source": "CNA"})) == {"rail"}


def test_ask_answers_only_from_the_kept_documents(client):
    question = "How many troops are in US Forces Korea?"
    answered = client.post("/ask", json={"question": question, "filters": {"source": "the straits times"}})
    assert answered.status_code == 200, answered.text
    assert "28,500" in answered.json()["answers"][0]["text"]
    elsewhere = client.post("/ask", json={"question": question, "filters": {"document_ids": ["rail", "budget"]}})
    assert elsewhere.status_code == 200, elsewhere.text
    body = elsewhere.json()
    assert {a["document_id"] for a in body["answers"]} <= {"rail", "budget"} and body["passages"]
    assert {p["document_id"] for p in body["passages"]} <= {"rail", "budget"}


def test_bad_filters_get_a_422_that_names_the_problem(client):
    q = {"question": "harbour"}
    assert "filters.document_id: unknown field" in error_message(
        client.post("/search", json={**q, "filters": {"document_id": "harbour"}})
    )
    assert "filters.published_from: must be an ISO date (YYYY-MM-DD), got '2024-13-01'" in error_message(
        client.post("/ask", json={**q, "filters": {"published_from": "2024-13-01"}})
    )
    reversed_range = {"published_from": "2024-12-01", "published_to": "2024-11-01"}
    assert "published_from (2024-12-01) is after published_to (2024-11-01)" in error_message(
        client.post("/search", json={**q, "filters": reversed_range})
    )
    too_many = {"document_ids": [f"d{i}" for i in range(1001)]}
    assert "filters.document_ids" in error_message(client.post("/ask", json={**q, "filters": too_many}))
    assert "since must be an ISO date (YYYY-MM-DD), got 'yesterday'" in error_message(
        client.get("/search", params={"q": "harbour", "since": "yesterday"})
    )
    assert "since (2024-12-01) is after until (2024-11-01)" in error_message(
        client.get("/documents", params={"since": "2024-12-01", "until": "2024-11-01"})
    )


def test_documents_list_filters_the_same_way(client):
    def listed(**params) -> set[str]:
        response = client.get("/documents", params=params)
        assert response.status_code == 200, response.text
        return {d["id"] for d in response.json()["documents"]}

    assert listed() == {"harbour", "rail", "budget", SEED_ID}
    assert listed(since="2024-11-01") == {"rail", SEED_ID}
    assert listed(source="cna") == {"rail"}
    assert listed(doc=["budget", "harbour"], until="2024-10-31") == {"harbour"}


def test_the_openapi_schema_documents_the_filters_and_their_limits(client):
    spec = client.get("/openapi.json").json()
    assert {"get", "post"} <= set(spec["paths"]["/search"])
    schema = spec["components"]["schemas"]["FiltersIn"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["document_ids"]["maxItems"] == 1000
    assert set(schema["properties"]) == {"document_ids", "published_from", "published_to", "source", "meta"}
    params = {p["name"] for p in spec["paths"]["/search"]["get"]["parameters"]}
    assert {"doc", "since", "until", "source"} <= params
    assert {"doc", "since", "until", "source"} <= {p["name"] for p in spec["paths"]["/documents"]["get"]["parameters"]}


def test_cli_search_and_ask_take_the_filter_flags(corpus_dir):
    from cli import EXIT_USAGE, app

    runner = CliRunner()
    index = ["--index", str(corpus_dir)]
    r = runner.invoke(app, ["search", "harbour", *index, "-k", "20", "--doc", "rail", "--doc", "budget"])
    assert r.exit_code == 0, r.output
    assert "rail#0" in r.output and "budget#0" in r.output and "harbour#0" not in r.output
    r = runner.invoke(app, ["search", "harbour", *index, "-k", "20", "--since", "2024-12-01", "--source", "cna"])
    assert r.exit_code == 0, r.output
    assert "rail#0" in r.output and "budget#0" not in r.output and "harbour#0" not in r.output
    r = runner.invoke(
        app,
        ["ask", "What did the council approve?", *index, "--reader", "heuristic", "--json", "--meta", "section=local"],
    )
    assert r.exit_code in (0, 1), r.output  # 1: no answer; the passages are what is checked
    passages = json.loads(r.stdout)["passages"]
    assert passages and {p["document_id"] for p in passages} <= {"harbour", "budget"}
    r = runner.invoke(app, ["search", "harbour", *index, "--until", "2024-13-01"])
    assert r.exit_code == EXIT_USAGE and "--until must be an ISO date (YYYY-MM-DD), got '2024-13-01'" in r.stderr
    r = runner.invoke(app, ["ask", "x", *index, "--since", "2024-12-01", "--until", "2024-11-01"])
    assert r.exit_code == EXIT_USAGE and "--since (2024-12-01) is after --until (2024-11-01)" in r.stderr
    r = runner.invoke(app, ["search", "x", *index, "--meta", "section"])
    assert r.exit_code == EXIT_USAGE and "--meta must be key=value, got 'section'" in r.stderr
