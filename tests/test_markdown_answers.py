"""End to end on a small Markdown corpus (attribute lists, inline code, an HTML block, emphasis): clean titles,
and answers that neither start nor end with markup, with offsets exact into the original file text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rag.engine import Engine
from rag.loaders import load_paths
from rag.pipeline import AskSettings, QAPipeline
from tests.conftest import make_settings

RUN = """# Run the **server** { #run-the-server }

<div class="termy">

```console
$ fastapi dev main.py
```

</div>

The interactive API docs are served at `/docs` and the OpenAPI schema at `/openapi.json`.
"""

CORPUS = {
    "security.md": """# Security { #security }

FastAPI provides several tools to help you deal with *security* easily.

## OAuth2 { #oauth2 }

The class `OAuth2PasswordBearer` receives the URL that the client uses to send the username and password.
The token URL is `/token`, a relative URL.
""",
    "status.md": """# Response Status Code { #response-status-code .big }

The default status code for a created item is `201`, and for a deleted item it is `204`.

Declare it with the parameter `status_code` in the _path operation decorator_.
""",
    "run.md": RUN,
    "tutorial/first-steps.md": """# `First` Steps with [FastAPI](https://fastapi.tiangolo.com) { #first-steps }

Install the package with `pip install "fastapi[standard]"`. The simplest FastAPI file is called `main.py`.
""",
}
TITLES = {
    "security": "Security",
    "status": "Response Status Code",
    "run": "Run the server",
    "tutorial/first-steps": "First Steps with FastAPI",
}
QUESTIONS = {
    "What status code is returned for a created item?": "201",
    "Which class receives the URL that the client uses to send the username and password?": "OAuth2PasswordBearer",
    "Where is the OpenAPI schema served?": "/openapi.json",
    "What is the token URL?": "/token",
    "What is the simplest FastAPI file called?": "main.py",
    "Which command runs the server?": None,  # the answer sits in a fenced block inside <div class="termy">
}
_EDGE_MARKUP = re.compile(r"^[\s`*_~#|>{\[(<]|[\s`*_~#|<{\[(,;:]$")
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")


@pytest.fixture(scope="module")
def engine(tmp_path_factory, embedder) -> Engine:
    root = tmp_path_factory.mktemp("markdown-docs")
    for rel, text in CORPUS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    loaded = load_paths([root])
    assert loaded.skipped == []
    engine = Engine(make_settings(Path(root) / "index"), embedder)
    engine.reload(create=True)
    engine.upsert(loaded.documents)
    return engine


@pytest.fixture(scope="module", params=["heuristic", "trained"])
def pipeline(request, embedder) -> QAPipeline:
    # Always answer (threshold 0) and return several spans, so every candidate the reader ranks is checked;
    # the decision is not under test here, so the calibration is not loaded either.
    loaded = QAPipeline.load(request.param, embedder=embedder, calibrated=False)
    settings = AskSettings(no_answer_threshold=0.0, max_answers=5, spans_per_passage=5, read_k=4)
    return QAPipeline(embedder, loaded.reader, loaded.calibrator, reader_kind=request.param, settings=settings)


def test_titles_are_plain_text_and_texts_are_the_files(engine):
    docs = engine.snapshot.documents
    assert {doc_id: doc.title for doc_id, doc in docs.items()} == TITLES
    assert docs["run"].text == RUN


def assert_clean(answer, documents) -> None:
    text = answer.text
    assert documents[answer.doc_id].text[answer.start : answer.end] == text
    assert answer.title == TITLES[answer.doc_id]
    assert text and text == text.strip()
    assert not _EDGE_MARKUP.search(text), f"markup at an edge of {text!r}"
    assert not _TAG.fullmatch(text) and any(ch.isalnum() for ch in text), f"markup-only answer {text!r}"
    for quote in "\"'":
        if text[0] == quote or text[-1] == quote:  # a quote at an edge only when it is closed inside the answer
            assert text.count(quote) % 2 == 0, f"unbalanced quote at an edge of {text!r}"
    assert text[0] not in "\u201c\u201d\u2018\u2019" and text[-1] not in "\u201c\u2018"


@pytest.mark.parametrize("question", list(QUESTIONS))
def test_answers_carry_no_markup_at_their_edges(engine, pipeline, question):
    result = pipeline.ask(engine.snapshot, question, top_k=4)
    assert result.answers, question
    for answer in result.answers:
        assert_clean(answer, engine.snapshot.documents)


def test_answers_in_inline_code_come_without_backticks(engine, pipeline):
    exact = contained = 0
    for question, expected in QUESTIONS.items():
        if expected is None:
            continue
        texts = [a.text for a in pipeline.ask(engine.snapshot, question, top_k=4).answers]
        exact += expected in texts
        contained += any(expected in t for t in texts)
        assert not any(t.startswith("`") or t.endswith("`") for t in texts)
    assert contained >= 4, "both readers find most of these answers"
    if pipeline.reader_kind == "trained":  # it answers with the code itself: exact only without the backticks
        assert exact >= 3
