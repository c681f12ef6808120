"""What the browser tests share (tests/test_browser.py: asking; tests/test_browser_documents.py: the documents
views and feedback): a real uvicorn serving an index of seeds/ plus a hostile document and a PDF, Debian's
headless Chromium driven by Playwright, and the page helpers. The tests skip only when chromium or playwright
is not installed.

The reader is the trained one when its weights exist, otherwise the heuristic one; set
RAG_BROWSER_TEST_READER=heuristic|trained to choose.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from rag.loaders import load_data
from rag.types import Document
from tests.conftest import ROOT, make_settings, serve_in_thread
from tests.sample_files import pdf_bytes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    Page = expect = sync_playwright = None  # type: ignore[assignment,misc]

#: Each browser test module's ``pytestmark``.
NEEDS_A_BROWSER = [
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
