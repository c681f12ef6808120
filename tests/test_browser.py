"""Asking on the web page in a real browser (service/static, against a real uvicorn; tests/browser_support.py):
the answer highlighted and cited down to its characters, keyboard use, the result states, errors, a PDF's page,
filters, a narrow screen."""

# ruff: noqa: F811 (the fixtures imported from tests/browser_support.py are the tests' arguments)

from __future__ import annotations

import re

import httpx
import pytest

from tests.browser_support import (  # noqa: F401 (fixtures: the tests' arguments)
    FOOTBRIDGE,
    HOSTILE,
    HOSTILE_ID,
    NEEDS_A_BROWSER,
    OFF_TOPIC,
    ROOT,
    SCREENSHOT,
    TROOPS,
    Page,
    ask,
    browser_context,
    expect,
    no_horizontal_scroll,
    offsets,
    page,
    server,
)

pytestmark = NEEDS_A_BROWSER


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
