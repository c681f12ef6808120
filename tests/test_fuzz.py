"""Fuzzing the HTTP contract. Whatever comes in, the service never answers 5xx, and every response is one the
OpenAPI document promises (a documented status, a body matching its schema, errors in the one error shape).

Two layers: schemathesis over the service's own OpenAPI schema (every operation, writes included, in-process
over ASGI), and hypothesis-driven questions in many scripts, which the schema cannot describe. Both are
bounded and derandomised so CI sees the same cases every run; ``eval/fuzz.py`` runs the long version against
a real uvicorn.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.engine import Engine
from service.main import create_app
from service.schemas.common import MAX_QUESTION_CHARS, clean_question
from tests.conftest import eval_module, make_settings

#: What must hold for every generated request, valid or not: declared once, beside the long fuzz (see there why
#: `positive_data_acceptance` is not one of them).
CHECKS = eval_module("fuzz_cases").CHECKS

#: derandomize: the same cases every run, so a CI failure reproduces instead of flaking; no deadline on a slow box.
BOUNDED = settings(derandomize=True, deadline=None, database=None)


@pytest.fixture(scope="module")
def engine(tmp_path_factory, seed_index_dir, embedder, heuristic_pipeline):
    """An engine over a copy of the seed index (fuzzed writes change it), with the heuristic reader."""
    folder = tmp_path_factory.mktemp("fuzz") / "index"
    shutil.copytree(seed_index_dir, folder)
    engine = Engine(make_settings(folder, reader="heuristic"), embedder, heuristic_pipeline)
    engine.reload()
    return engine


@pytest.fixture(scope="module")
def app(engine):
    """Writes open without a key, so fuzzed POST/DELETE /documents reach the engine instead of stopping at 403."""
    return create_app(make_settings(engine.settings.index_dir, reader="heuristic", allow_open_writes=True), engine)


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app, raise_server_exceptions=False)


# The OpenAPI document depends on neither settings nor index, so it is read at import from an app that never
# starts, and each case runs against the fixture's app. (`schemathesis.pytest.from_fixture` would fit better,
# but schemathesis 4.32 reads `Node._nodeid`, which pytest 9.2 no longer has.)
OPENAPI = create_app(make_settings(Path("unused-index"))).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)
# Values mined from the loaded Python modules would make the cases depend on which other tests ran first.
schema.config.analysis.constants.enabled = False


@schema.parametrize()
@settings(BOUNDED, max_examples=30, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case, app):
    case.call_and_validate(app=app, checks=CHECKS)


# ------------------------------------------------------------------------------- questions beyond the schema

#: Hand-picked questions that broke QA services before: other scripts, invisible and direction marks,
#: combining marks, punctuation only, quotes, markup. All are acceptable questions: 200.
ODD_QUESTIONS = [
    "美国驻韩军队有多少人？",
    "كم عدد القوات الأمريكية في كوريا الجنوبية؟",
    "दक्षिण कोरिया में कितने अमेरिकी सैनिक हैं?",
    "Сколько американских военных в Корее?",
    "🇺🇸🪖❓",
    "🏳️‍🌈 troops?",
    "\u200f\u200etroops\u200f",
    "\u202eaerok ni spoort\u202c",
    "\u200b",
    "\ufeffHow many troops?",
    "troops\u00adKorea",
    "ＴＲＯＯＰＳ ｉｎ ＫＯＲＥＡ",
    "e\u0301\u0301\u0301",
    "???",
    "!!!",
    "—",
    "…",
    "“”",
    "«»",
    '"',
    "'",
    "''''",
    "\\",
    "{}",
    "%s%n%x",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "  How many troops are in US Forces Korea?  ",
    "How many\ttroops\nare in Korea?",
    "ǅ" * MAX_QUESTION_CHARS,
    "😀" * MAX_QUESTION_CHARS,
]

#: Not questions: empty, only whitespace (Unicode's too), control characters, too long. 422.
BAD_QUESTIONS = ["", " ", "\t\n", "\u2028", "\x85", "\u3000", "a\x00b", "a\x1fb", "\x7f", "x" * 1001]

#: Arbitrary text, weighted towards the characters that trouble tokenizers and validators.
_TRICKY = st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me", "Po", "Pd", "Pi", "Pf", "So", "Sk"])
_FRAGMENTS = st.sampled_from(
    [q for q in ODD_QUESTIONS if len(q) < 50] + [" ", "\x00", "\x1b", "\r\n", "troops", "28,500"]
)
QUESTIONS = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=_TRICKY, max_size=20),
    st.lists(_FRAGMENTS, min_size=1, max_size=6).map("".join),
    st.integers(MAX_QUESTION_CHARS - 2, MAX_QUESTION_CHARS + 2).map(lambda n: "ü" * n),
)


def expected_question(raw: str) -> str | None:
    """What the service should make of a question: the cleaned text, or None if it must answer 422."""
    if not 1 <= len(raw) <= MAX_QUESTION_CHARS:
        return None
    try:
        return clean_question(raw)
    except ValueError:
        return None


def post_raw(client, path: str, body: bytes):
    return client.post(path, content=body, headers={"content-type": "application/json"})


def assert_error_shape(response, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) <= {"code", "message", "details"}
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]


def body_or_422(response, raw: str) -> tuple[dict, str] | None:
    """Never a 5xx: the body of a 200 and the cleaned text it must echo, or None (after checking the 422) when
    ``raw`` is not a question."""
    assert response.status_code < 500, response.text
    expected = expected_question(raw)
    if expected is None:
        assert_error_shape(response, 422)
        return None
    assert response.status_code == 200, response.text
    return response.json(), expected


def assert_asked(response, raw: str) -> None:
    """A 200 with a normal answer (spans copied from their context) or no_answer; or 422 when it is not a question."""
    if (answered := body_or_422(response, raw)) is None:
        return
    body, question = answered
    assert body["question"] == question
    assert body["no_answer"] is (not body["answers"])
    for answer in body["answers"]:
        c = answer["context_offset"]
        assert answer["text"] and answer["context"][c["start"] : c["end"]] == answer["text"]
        assert 0.0 <= answer["score"] <= 1.0
    assert body["passages"]


def assert_searched(response, raw: str) -> None:
    """A 200 with passages, or 422 when it is not a query."""
    if (searched := body_or_422(response, raw)) is None:
        return
    body, query = searched
    assert body["query"] == query and body["passages"]


@pytest.mark.parametrize("question", ODD_QUESTIONS + BAD_QUESTIONS)
def test_odd_questions_get_an_answer_or_a_422(client, question):
    assert_asked(client.post("/ask", json={"question": question}), question)
    assert_searched(client.get("/search", params={"q": question, "k": 3}), question)


@given(question=QUESTIONS)
@settings(BOUNDED, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_any_question_gets_an_answer_or_a_422(client, question):
    assert_asked(client.post("/ask", json={"question": question}), question)


@given(query=QUESTIONS)
@settings(BOUNDED, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
def test_any_search_gets_passages_or_a_422(client, query):
    assert_searched(client.get("/search", params={"q": query}), query)


@pytest.mark.parametrize(
    "body",
    [
        b'{"question": "\\ud800"}',  # a lone surrogate, legal as a JSON escape, not as text
        b'{"question": "a\\udfffb"}',
        b'{"question": "a", "top_k": NaN}',
        b'{"question": "a", "top_k": 1e400}',
        b'{"question": "a", "max_answers": -1}',
        b'{"question": ["a"]}',
        b'{"question": "a", "extra": 1}',
        b"[",
        b"null",
        b"",
    ],
)
def test_malformed_ask_bodies_get_a_422(client, body):
    assert_error_shape(post_raw(client, "/ask", body), 422)


# ----------------------------------------------------- bugs the fuzzing found (eval/results/fuzz.md)


def _documented(method: str, path: str) -> set[int]:
    return {int(code) for code in OPENAPI["paths"][path][method.lower()]["responses"]}


@pytest.fixture
def scratch_config(tmp_path, seed_index_dir):
    """Settings over a copy of the index of its own, for writes that could spoil the shared one."""
    shutil.copytree(seed_index_dir, tmp_path / "index")
    return make_settings(tmp_path / "index", reader="heuristic", allow_open_writes=True)


@pytest.fixture
def scratch(scratch_config, embedder, heuristic_pipeline):
    engine = Engine(scratch_config, embedder, heuristic_pipeline)
    engine.reload()
    return TestClient(create_app(scratch_config, engine), raise_server_exceptions=False)


@pytest.mark.parametrize("meta", [b'{"note": "\\ud800"}', b'{"\\udc80": 1}', b'{"a": ["x", {"b": "\\udfff"}]}'])
def test_a_lone_surrogate_in_meta_is_refused_not_a_500(scratch, meta):
    r = post_raw(scratch, "/documents", b'{"documents": [{"id": "odd", "text": "Some text.", "meta": ' + meta + b"}]}")
    assert r.status_code < 500, r.text
    assert r.status_code in _documented("POST", "/documents")
    if r.status_code == 200:  # reported as skipped is as good as a 422
        assert r.json()["added"] == [] and r.json()["skipped"]
    else:
        assert_error_shape(r, r.status_code)


def test_deeply_nested_meta_cannot_break_the_listing(scratch):
    meta = b'{"x": ' + b"[" * 300 + b"]" * 300 + b"}"
    r = post_raw(scratch, "/documents", b'{"documents": [{"id": "deep", "text": "Some text.", "meta": ' + meta + b"}]}")
    assert r.status_code < 500, r.text
    assert scratch.get("/documents").status_code == 200
    assert scratch.get("/documents/deep").status_code in (200, 404)


@pytest.mark.parametrize("text", ["One line\u2028and another.", "Next\x85line.", "One paragraph\u2029and another."])
def test_a_document_written_over_http_survives_a_restart(scratch_config, scratch, embedder, heuristic_pipeline, text):
    r = scratch.post("/documents", json={"documents": [{"id": "odd-breaks", "text": text}]})
    assert r.status_code == 200, r.text
    reopened = Engine(scratch_config, embedder, heuristic_pipeline)  # what the next `rag serve` does
    reopened.reload()
    assert reopened.ready, reopened.load_error
    assert reopened.snapshot.documents["odd-breaks"].text == text


@pytest.mark.parametrize("body", [b'{"question": "ok?", "top_k": true}', b'{"question": "ok?", "max_answers": true}'])
def test_booleans_are_not_integers(client, body):
    assert_error_shape(post_raw(client, "/ask", body), 422)


UNPARSEABLE = {
    "not UTF-8": b'{"question": "\xff\xfe"}',
    "nested past the recursion limit": b'{"question": "a", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize(
    "path",
    [
        "/ask",
        "/documents",
    ],
)
@pytest.mark.parametrize("kind", list(UNPARSEABLE))
def test_unparseable_bodies_get_a_documented_status(client, path, kind):
    r = post_raw(client, path, UNPARSEABLE[kind])
    assert 400 <= r.status_code < 500
    assert_error_shape(r, r.status_code)
    assert r.status_code in _documented("POST", path), f"{r.status_code} is not documented for POST {path}"


@pytest.mark.parametrize(
    "path",
    ["/ask", "/documents"],
)
def test_oversized_bodies_get_a_documented_413(engine, path):
    small = create_app(make_settings(engine.settings.index_dir, allow_open_writes=True, max_request_bytes=1024), engine)
    body = json.dumps({"question": "x" * 2000} if path == "/ask" else {"documents": [{"text": "x" * 2000}]})
    r = TestClient(small, raise_server_exceptions=False).post(path, content=body)
    assert_error_shape(r, 413)
    assert 413 in _documented("POST", path)
