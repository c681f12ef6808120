"""Text, Markdown and HTML pages -> Document: the text kept whole, the title, and the date, by-line and
publisher read from the lines near the top (the seed layout), a Markdown front matter or an HTML page's tags.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rag.dates import dated
from rag.errors import LoadError
from rag.types import Document

_DATE_LINE = re.compile(
    r"^(?:(?:published|updated|posted)(?:\s+on)?:?\s+)?"
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,?\s+)?"
    r"(?:(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?\s+\d{1,2},?\s+\d{4}"
    r"|\d{1,2}\s+(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?,?\s+\d{4}"
    r"|\d{4}-\d{2}-\d{2}(?:[T ][\d:.]+Z?)?)"
    r"(?:,?\s+\d{1,2}:\d{2}\s*(?:[ap]\.?m\.?)?)?\s*$",
    re.IGNORECASE,
)
#: One to four capitalised words ("Walter Sim", "J. K. Rowling"), names joined by commas, "and" or "&".
_NAMES = r"[A-Z][\w'.-]+(?:\s+[A-Z][\w'.-]+){0,3}(?:(?:,\s*|\s+and\s+|\s*&\s*)[A-Z][\w'.-]+(?:\s+[A-Z][\w'.-]+){0,3})*"
#: "By Walter Sim and Wendy Teo" (names only: "by publishing your own packages" is a sentence's wrapped line).
_BYLINE = re.compile(rf"^by\s+(?P<names>{_NAMES})$", re.IGNORECASE)
_NAMES_LINE = re.compile(rf"^{_NAMES}$")
_SOURCE_LINE = re.compile(r"^(?:The\s+)?[A-Z][\w&.'-]*(?:\s+[A-Z][\w&.'-]*){0,4}$")
_HEADER_LINES = 12


def parse_text_document(text: str, *, doc_id: str, source: str | None, markdown: bool = False) -> Document:
    """The seed layout: first line the title; by-line, source and date lines near the top become metadata.

    The text itself is kept whole and unchanged; metadata only describes it.
    """
    front: dict[str, str] = {}
    if markdown and (m := _FRONT_MATTER.match(text)):
        front = _front_matter(m.group(1))
        text_lines = text[m.end() :].splitlines()
    else:
        text_lines = text.splitlines()
    lines = [line.strip() for line in text_lines]
    non_empty = [line for line in lines if line]
    if not non_empty:
        raise LoadError("empty")
    title = non_empty[0]
    if markdown:
        cleaned = (markdown_title(line) for line in non_empty[:_HEADER_LINES])
        title = front.get("title") or next((t for t in cleaned if t), "") or title
    published, meta = header_metadata(non_empty)
    published = front.get("date") or front.get("published") or published
    return Document(id=doc_id, title=title, text=text, published=dated(published, meta), meta=meta, source=source)


def header_metadata(lines: list[str]) -> tuple[str | None, dict[str, Any]]:
    """The date line as printed, and the by-line and source (publisher) lines, among the first non-empty
    lines below the title (``lines[0]``)."""
    meta: dict[str, Any] = {}
    published = None
    for line in lines[1:_HEADER_LINES]:
        if len(line) > 80:
            continue
        if published is None and _DATE_LINE.match(line):
            published = line
        elif (m := _BYLINE.match(line)) and "byline" not in meta:
            meta["byline"] = m.group("names").strip()
        elif "byline" not in meta and (" and " in line or "," in line) and _NAMES_LINE.match(line):
            meta["byline"] = line
        elif "source" not in meta and "byline" in meta and line != meta["byline"] and _SOURCE_LINE.match(line):
            meta["source"] = line
    return published, meta


_FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)\r?\n(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_MD_HEADING = re.compile(r"^#{1,6}(?=\s|$)|\s+#+\s*$")  # opening and closing ATX markers
_MD_ATTRS = re.compile(r"\s*\{:?\s*[#.][^{}]*\}\s*$")  # attribute list: { #id .class }
_MD_CODE = re.compile(r"(`+)(.+?)\1")
_MD_INLINE = (
    (re.compile(r"!?\[([^\[\]]*)\]\([^()]*(?:\([^()]*\)[^()]*)*\)"), r"\1"),  # links and images: their text
    (re.compile(r"!?\[([^\[\]]+)\]\[[^\[\]]*\]"), r"\1"),  # reference links
    (re.compile(r"<([A-Za-z][A-Za-z0-9+.-]*:[^<>\s]+)>"), r"\1"),  # autolinks: the address
    (re.compile(r"<!--.*?-->|</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>"), ""),  # HTML tags
    (re.compile(r"(\*\*|__|~~)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # strong, strikethrough
    (re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])"), r"\1"),  # emphasis
    (re.compile(r"(?<![\w_])_(?=\S)(.+?)(?<=\S)_(?![\w_])"), r"\1"),
    (re.compile(r"\\([\\`*_{}\[\]()#+\-.!<>|~])"), r"\1"),  # backslash escapes
)


def markdown_title(line: str) -> str:
    """A Markdown heading line as plain text: no heading markers, attribute list or inline markup.

    ``## Use `Depends` with **yield** { #depends }`` -> ``Use Depends with yield``; empty for markup only.
    """
    title = _MD_ATTRS.sub("", _MD_HEADING.sub("", line.strip()))
    pieces, pos = [], 0
    for m in _MD_CODE.finditer(title):  # code keeps its text as written: `__init__` is not emphasis
        pieces += [_md_inline(title[pos : m.start()]), m.group(2).strip()]
        pos = m.end()
    pieces.append(_md_inline(title[pos:]))
    return " ".join("".join(pieces).split())


def _md_inline(text: str) -> str:
    for pattern, replacement in _MD_INLINE:
        text = pattern.sub(replacement, text)
    return text


def _front_matter(block: str) -> dict[str, str]:
    """``key: value`` lines of a YAML front matter block (only plain scalars; enough for the title)."""
    out = {}
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and not line[:1].isspace():
            out[key.strip().lower()] = value.strip().strip("'\"").strip()
    return out


_HTML_DATES = (  # (attribute, value) of <meta> tags that give the publication date, best first
    ("property", "article:published_time"),
    ("name", "article:published_time"),
    ("itemprop", "datePublished"),
    ("name", "date"),
    ("name", "pubdate"),
    ("property", "date"),
    ("property", "pubdate"),
)
_HTML_PUBLISHERS = (("property", "og:site_name"), ("name", "publisher"), ("property", "article:publisher"))


def html_to_document(html: str, *, doc_id: str, source: str | None) -> Document:
    """Main text of a page: <article> or <main> when present, without scripts, navigation and footers.

    The publication date comes from <meta> tags, else from the first <time datetime> (in the article when it
    has one); the publisher from ``og:site_name`` or ``<meta name="publisher">``."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    meta: dict[str, Any] = {"format": "html"}
    if publisher := _meta_content(soup, _HTML_PUBLISHERS):
        meta["source"] = publisher
    published = _meta_content(soup, _HTML_DATES)
    if published is None:  # read before the page's header (where <time> often sits) is removed below
        times = [*(soup.find("article") or soup).find_all("time"), *soup.find_all("time")]
        published = next((str(t["datetime"]).strip() for t in times if str(t.get("datetime") or "").strip()), None)
    for junk in soup(["script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg"]):
        junk.decompose()
    title_tag = soup.find("h1") or soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else ""
    if soup.title and soup.title.get_text(strip=True):
        title = title or soup.title.get_text(" ", strip=True)
    root: Any = soup.find("article") or soup.find("main") or soup.body or soup
    for br in root.find_all("br"):
        br.replace_with("\n")
    blocks = []
    for el in root.find_all(["h1", "h2", "h3", "h4", "p", "li", "blockquote", "pre", "td"]):
        if el.find(["p", "li", "blockquote"]):  # only leaf blocks, so nothing is said twice
            continue
        piece = " ".join(el.get_text().split())
        if piece:
            blocks.append(piece)
    if not blocks:
        blocks = [" ".join(line.split()) for line in root.get_text("\n").splitlines() if line.strip()]
    text = "\n\n".join(blocks)
    if not text.strip():
        raise LoadError("no text in the HTML page")
    published = dated(published, meta)
    return Document(id=doc_id, title=title or doc_id, text=text, published=published, meta=meta, source=source)


def _meta_content(soup: Any, keys: Iterable[tuple[str, str]]) -> str | None:
    for attr, value in keys:
        tag = soup.find("meta", attrs={attr: value})
        if tag is not None and (content := " ".join(str(tag.get("content") or "").split())):
            return content
    return None
