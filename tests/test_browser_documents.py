"""The web page's documents views and feedback in a real browser (service/static, against a real uvicorn;
tests/browser_support.py): the list and the document view, text from the API shown as text and never run, and
users' verdicts and chosen words written to the index's feedback file."""

# ruff: noqa: F811 (the fixtures imported from tests/browser_support.py are the tests' arguments)

from __future__ import annotations

from urllib.parse import quote

import httpx

from tests.browser_support import (  # noqa: F401 (fixtures: the tests' arguments)
    HOSTILE,
    HOSTILE_ID,
    HOSTILE_QUESTION,
    NEEDS_A_BROWSER,
    SERVED,
    TROOPS,
    Page,
    ask,
    browser_context,
    expect,
    page,
    server,
)

pytestmark = NEEDS_A_BROWSER


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
