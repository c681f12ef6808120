"""The web page in a real browser: Debian's headless Chromium, driven by Playwright, against a real uvicorn
serving an index of seeds/. Skipped only when chromium or playwright is not installed.

The reader is the trained one when its weights exist, otherwise the heuristic one; set
RAG_BROWSER_TEST_READER=heuristic|trained to choose.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from rag.loaders import load_data
from rag.types import Document
from tests.conftest import ROOT, make_settings, serve_in_thread
from tests.sample_files import pdf_bytes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None  # type: ignore[assignment]

pytestmark = [
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install playwright)"),
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"),
]

READER = os.environ.get("RAG_BROWSER_TEST_READER") or (
    "trained" if (ROOT / "rag" / "reader" / "weights" / "model.safetensors").exists() else "heuristic"
)
SCREENSHOT = ROOT / "docs" / "screenshot.png"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-quic",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 90_000  # two slow cores and a training job beside us: be patient

TROOPS = "How many troops are in US Forces Korea?"
OFF_TOPIC = "Who won the 1966 FIFA World Cup?"

# A document whose title, id and text are markup: the page must show them as text and run none of it.
HOSTILE_ID = "odd<b>&\"id'"
HOSTILE = Document(
    id=HOSTILE_ID,
    title='Marmalade <img src=x onerror="window.__xss=1"> report',
    text=(
        "The annual marmalade festival is held in the village of Dalemain every March.\n\n"
        "Judges tasted <script>window.__xss=2</script> more than three thousand jars this year. "
        'The winning jar \N{TANGERINE} <img src=x onerror="window.__xss=3"> came from Seville oranges.\n\n'
        "Organisers said the marmalade festival would return next spring."
    ),
)
HOSTILE_QUESTION = "Where is the marmalade festival held <img src=x onerror=window.__xss=4>?"

# A two-page PDF: the answer to its question is on page 2.
HARBOUR_PDF = pdf_bytes(
    [
        ["Glasgow harbour works", "The quay wall along the river was repaired in the spring by a local firm."],
        ["Footbridge", "The new Clyde footbridge cost 42 million pounds and opened to walkers in March."],
    ]
)
FOOTBRIDGE = "How much did the Clyde footbridge cost?"
SERVED: dict[str, Path] = {}  # the folder the server fixture serves


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def server(tmp_path_factory, seed_index_dir, embedder) -> Iterator[str]:
    """A real uvicorn on a free port, in a thread, serving a copy of the seed index plus the hostile document."""
    from rag.engine import Engine
    from service.main import create_app

    folder = tmp_path_factory.mktemp("browser") / "index"
    SERVED["index"] = folder
    shutil.copytree(seed_index_dir, folder)
    settings = make_settings(folder, reader=READER)
    writer = Engine(settings, embedder)
    writer.reload()
    writer.upsert([HOSTILE, *load_data(HARBOUR_PDF, "harbour.pdf").documents])

    with serve_in_thread(create_app(settings)) as base:
        yield base


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 900},
        )
        context.set_default_timeout(WAIT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser_context) -> Iterator[Page]:
    """A fresh tab; script errors and Content-Security-Policy violations fail the test."""
    tab = browser_context.new_page()
    tab.set_viewport_size({"width": 1200, "height": 900})
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    tab.on(
        "console",
        lambda msg: problems.append(f"console: {msg.text}") if "Content Security Policy" in msg.text else None,
    )
    yield tab
    tab.close()
    assert not problems, problems


def ask(page: Page, question: str) -> None:
    box = page.get_by_label("Your question")
    box.fill(question)
    box.press("Enter")
    expect(page.locator("#results")).to_be_visible()
    expect(page.locator("#results")).to_have_attribute("aria-busy", "false")


def offsets(href: str | None) -> tuple[str, int, int]:
    """id, start, end from a document-view link such as ``#/document?id=X&start=1&end=5``."""
    assert href, "the link has no href"
    fragment = urlsplit(href).fragment
    path, _, query = fragment.partition("?")
    assert path == "/document", href
    params = parse_qs(query)
    return params["id"][0], int(params["start"][0]), int(params["end"][0])


def no_horizontal_scroll(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


# ------------------------------------------------------------------------------------------------ tests


def test_answer_is_highlighted_cited_and_opens_the_document(page: Page, server: str):
    page.goto(server + "/")
    expect(page.get_by_role("heading", name="Ask a question")).to_be_visible()
    assert page.evaluate("document.activeElement.id") == "question"

    # Keyboard only: type, Enter.
    page.keyboard.type(TROOPS)
    page.keyboard.press("Enter")
    mark = page.locator("#top-answer blockquote mark")
    expect(mark).to_be_visible()
    answer = page.locator("#top-answer .answer-text").inner_text()
    assert "28,500" in mark.inner_text()
    assert mark.inner_text() == answer
    expect(page.locator("#top-answer .confidence")).to_have_text(re.compile(r"^\d{1,3}% confidence$"))
    expect(page.locator("#ask-status")).to_contain_text("Answer: ")
    expect(page.locator(".timings")).to_have_text(re.compile(r"^Took \d"))
    assert page.locator(".passage").count() == 5
    assert page.locator("#results").get_attribute("aria-live") == "polite"

    # The citation names the document and the characters, which really hold the answer.
    link = page.locator("#top-answer a.cite-link")
    doc_id, start, end = offsets(link.get_attribute("href"))
    document = httpx.get(f"{server}/documents/{doc_id}", timeout=30).json()
    assert document["text"][start:end] == answer
    expect(link).to_have_text(document["title"])
    expect(page.locator("#top-answer .cite-meta")).to_contain_text(f"{doc_id} · characters {start:,}–{end:,}")

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))

    # The answer's sentence comes first, a piece of the document; its passage opens on demand.
    sentence = page.locator("#top-answer blockquote.sentence").inner_text()
    assert answer in sentence and sentence in document["text"]
    passage = page.locator("#top-answer .answer-passage .context")
    expect(passage).to_be_hidden()
    page.locator("#top-answer .answer-passage summary").click()
    expect(passage.locator("mark")).to_have_text(answer)
    assert len(passage.inner_text()) > len(sentence)

    # Tab to the citation (it is a real link, with a visible focus ring) and open it with Enter.
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('cite-link')"):
            break
    else:
        pytest.fail("the citation link is not reachable with Tab")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("Enter")

    highlight = page.locator("#doc-text mark#doc-highlight")
    expect(highlight).to_have_text(answer)
    expect(page.locator("#doc-title")).to_have_text(document["title"])
    expect(highlight).to_be_in_viewport()
    expect(highlight).to_be_focused()
    full = page.locator("#doc-text").inner_text()
    assert full.replace("\n", "") == document["text"].replace("\n", "")

    # Back returns to the answer, still there.
    page.get_by_role("link", name="Back").click()
    expect(page.locator("#top-answer blockquote mark")).to_have_text(answer)


def test_off_topic_question_shows_a_result_state(page: Page, server: str):
    page.goto(server + "/")
    ask(page, OFF_TOPIC)
    not_found = page.locator("#not-found")
    expect(not_found.or_(page.locator("#top-answer"))).to_be_visible()
    if not_found.is_visible():  # the heuristic reader may still answer: that is a result state too
        expect(not_found).to_contain_text("Not in the articles")
        expect(page.locator("#ask-status")).to_have_text("Not in the articles.")
        # The reason in words, and the threshold the answer would have needed.
        expect(page.locator("#no-answer-reason")).to_contain_text("articles")
        expect(not_found.locator(".threshold-note")).to_contain_text("at least")
        assert page.locator(".passage").count() > 0  # the passages searched are still shown


def test_api_text_is_shown_as_text_never_run(page: Page, server: str):
    page.goto(server + "/")
    ask(page, HOSTILE_QUESTION)
    results = page.locator("#results")
    expect(results.locator(".asked q")).to_have_text(HOSTILE_QUESTION)
    expect(results).to_contain_text('Marmalade <img src=x onerror="window.__xss=1"> report')
    assert page.locator("main img, main script").count() == 0

    # The same document through the documents list and the document view.
    page.get_by_role("link", name="Documents").click()
    expect(page.get_by_role("heading", name="Indexed documents")).to_be_focused()
    entry = page.get_by_role("link", name=HOSTILE.title)
    expect(entry).to_be_visible()
    expect(page.locator(".doc-item", has=entry)).to_contain_text(HOSTILE_ID)
    entry.click()
    expect(page.locator("#doc-title")).to_have_text(HOSTILE.title)
    expect(page.locator("#doc-text")).to_contain_text("<script>window.__xss=2</script>")
    expect(page.locator("#doc-meta")).to_contain_text(HOSTILE_ID)
    assert page.locator("main img, main script").count() == 0
    assert page.evaluate("window.__xss") is None

    # Offsets count code points, as Python does; the emoji before "Seville" must not shift the highlight.
    start = HOSTILE.text.index("Seville")
    page.goto(f"{server}/#/document?id={quote(HOSTILE_ID)}&start={start}&end={start + len('Seville')}")
    expect(page.locator("#doc-highlight")).to_have_text("Seville")


def test_documents_view_lists_the_index(page: Page, server: str):
    listing = httpx.get(f"{server}/documents", timeout=30).json()
    page.goto(server + "/#/documents")
    items = page.locator("#docs-list .doc-item")
    expect(items).to_have_count(listing["count"])
    expect(page.locator("#docs-summary")).to_contain_text(f"{listing['count']} documents")
    seed = next(d for d in listing["documents"] if d["id"] != HOSTILE_ID)
    row = page.locator(".doc-item", has=page.get_by_role("link", name=seed["title"]))
    expect(row).to_contain_text(f"{seed['chars']:,} characters · {seed['chunks']} passages")
    row.get_by_role("link").click()
    expect(page.locator("#doc-title")).to_have_text(seed["title"])
    expect(page.locator("#doc-span")).to_be_hidden()  # no span asked for, nothing highlighted


def test_errors_are_shown_politely(page: Page, server: str):
    page.goto(server + "/")
    error = page.locator("#ask-error")

    # While the answer is on its way the page says so, and the results are marked busy.
    held = []
    page.route("**/ask", lambda route: held.append(route))
    box = page.get_by_label("Your question")
    box.fill("anything")
    box.press("Enter")
    expect(page.locator("#ask-status")).to_have_text("Searching the articles…")
    expect(page.locator("#ask-status")).to_be_visible()
    expect(page.locator("#results")).to_have_attribute("aria-busy", "true")
    held[0].fulfill(status=503, json={"error": {"code": "not_ready", "message": "the service is not ready"}})
    expect(error).to_contain_text("busy or still starting up")
    expect(page.locator("#ask-status")).to_have_text("")
    page.unroute("**/ask")

    busy = {"error": {"code": "overloaded", "message": "the service is busy; retry shortly"}}
    page.route("**/ask", lambda route: route.fulfill(status=503, json=busy))
    box.press("Enter")
    expect(error).to_contain_text("busy or still starting up")
    expect(page.locator("#results")).to_be_hidden()

    page.unroute("**/ask")
    page.route("**/ask", lambda route: route.abort("connectionrefused"))
    box.press("Enter")
    expect(error).to_contain_text("Could not reach the service")

    # The real API's 422: the box stops at 1000 characters, so lift that limit first.
    page.unroute("**/ask")
    page.evaluate("document.getElementById('question').removeAttribute('maxlength')")
    box.fill("x" * 1001)
    box.press("Enter")
    expect(error).to_contain_text("could not be processed")
    expect(error).to_contain_text("question")

    box.fill("   ")
    box.press("Enter")
    expect(error).to_contain_text("Please type a question")

    page.goto(server + "/#/document?id=no-such-document")
    expect(page.locator("#doc-error")).to_contain_text("Not found")


def test_a_pdf_answer_cites_its_page(page: Page, server: str):
    page.goto(server + "/")
    ask(page, FOOTBRIDGE)
    expect(page.locator("#top-answer blockquote mark")).to_contain_text("42 million")
    link = page.locator("#top-answer a.cite-link")
    doc_id, start, end = offsets(link.get_attribute("href"))
    assert doc_id == "harbour"
    document = httpx.get(f"{server}/documents/{doc_id}", timeout=30).json()
    assert start >= document["meta"]["page_starts"][1]  # the answer really is on page 2
    expect(page.locator("#top-answer .cite-meta")).to_have_text(f"{doc_id} · characters {start:,}–{end:,} · p. 2")
    passage = page.locator(".passage", has=page.get_by_role("link", name="Glasgow harbour works")).first
    expect(passage.locator(".passage-meta")).to_contain_text(re.compile(r"harbour · p\. [12] · score"))


def test_a_filtered_question_is_answered_only_from_the_chosen_documents(page: Page, server: str):
    seed_id = next((ROOT / "seeds").glob("*.txt")).stem
    page.goto(server + "/")
    page.locator("#ask-filters summary").click()
    picker = page.get_by_label("Only these documents")
    expect(picker.get_by_role("option", name=HOSTILE.title)).to_be_attached()  # filled from GET /documents
    picker.select_option(HOSTILE_ID)
    expect(page.locator("#filters-count")).to_have_text("(1 filter on)")
    with page.expect_request("**/ask") as sent:
        ask(page, TROOPS)
    assert sent.value.post_data_json["filters"] == {"document_ids": [HOSTILE_ID]}
    shown = page.locator(".passage .passage-meta .doc-id")
    expect(shown.first).to_be_visible()
    assert set(shown.all_inner_texts()) == {HOSTILE_ID}

    # A date range instead: only the seed article (published 2024-11-08) is left, and it holds the answer.
    page.get_by_role("button", name="Clear filters").click()
    page.get_by_label("Published from").fill("2024-11-01")
    page.get_by_label("Published to").fill("2024-11-30")
    with page.expect_request("**/ask") as sent:
        ask(page, TROOPS)
    assert sent.value.post_data_json["filters"] == {"published_from": "2024-11-01", "published_to": "2024-11-30"}
    expect(page.locator("#top-answer blockquote mark")).to_contain_text("28,500")
    expect(shown.first).to_be_visible()
    assert set(shown.all_inner_texts()) == {seed_id}


def test_narrow_screen(page: Page, server: str):
    page.set_viewport_size({"width": 380, "height": 800})
    page.goto(server + "/")
    assert no_horizontal_scroll(page)
    ask(page, TROOPS)
    expect(page.locator("#top-answer blockquote mark")).to_contain_text("28,500")
    assert no_horizontal_scroll(page)
    page.locator("#top-answer a.cite-link").click()
    expect(page.locator("#doc-highlight")).to_be_in_viewport()
    assert no_horizontal_scroll(page)


def test_feedback_from_the_page_marks_an_answer_and_selects_the_right_words(page: Page, server: str):
    import json

    page.goto(server + "/")
    page.fill("#question", TROOPS)
    page.keyboard.press("Enter")
    expect(page.locator("#top-answer")).to_be_visible()
    page.locator("#answer-feedback").get_by_role("button", name="Right").click()
    expect(page.locator("#answer-feedback .feedback-status")).to_contain_text("Thank you")

    # Select the first 12 characters of the first passage and say they are the answer.
    passage = page.locator(".passage").first
    page.evaluate(
        """() => {
            const text = document.querySelector('#passage-text-0');
            const walker = document.createTreeWalker(text, NodeFilter.SHOW_TEXT);
            const first = walker.nextNode();
            const range = document.createRange();
            range.setStart(first, 0);
            range.setEnd(first, 12);
            const selection = window.getSelection();
            selection.removeAllRanges();
            selection.addRange(range);
        }"""
    )
    selected = page.evaluate("window.getSelection().toString()")
    passage.get_by_role("button", name="This is the answer").click()
    expect(passage.locator(".feedback-status")).to_contain_text("Thank you")

    path = SERVED["index"] / "feedback" / "feedback.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    right, chosen = records[-2], records[-1]
    assert right["verdict"] == "right" and right["question"] == TROOPS and "28,500" in right["shown"]["text"]
    assert chosen["verdict"] == "answer_is" and chosen["answer"]["text"] == selected and len(selected) == 12
    page.goto(server + "/#/documents")
    expect(page.locator("#feedback-summary")).to_contain_text("annotated by users")
