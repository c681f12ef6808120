"""Read documents from files and folders: text/Markdown, HTML, JSON/JSONL records and SQuAD JSON.

Every document keeps its exact original text (for HTML: the text extracted from the page). Files that cannot
be read are reported with a reason and skipped; the rest are still loaded.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import LoadError, ValidationError
from rag.squad import article_text, is_squad
from rag.types import Document

TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
JSON_SUFFIXES = frozenset({".json"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | JSON_SUFFIXES | JSONL_SUFFIXES

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
MAX_ID_LENGTH = 200
MAX_META_DEPTH = 32
_ID_FORBIDDEN = re.compile(r"[\s/\\?#%\x00-\x1f\x7f]")


def check_document_id(doc_id: str) -> str:
    """Ids are used in URLs and chunk ids: no whitespace, slashes, '?', '#', '%' or control characters."""
    if not doc_id or len(doc_id) > MAX_ID_LENGTH:
        raise ValidationError(f"document id must have 1 to {MAX_ID_LENGTH} characters, got {len(doc_id)}")
    if doc_id in {".", ".."} or _ID_FORBIDDEN.search(doc_id):
        raise ValidationError(
            f"document id {doc_id!r} contains a character that is not allowed (whitespace, / \\ ? # % or control)"
        )
    return doc_id


def content_id(title: str, text: str) -> str:
    """A stable id derived from the content, for records that bring none."""
    return "doc-" + hashlib.sha256(f"{title}\n{text}".encode()).hexdigest()[:16]


def slug_id(name: str) -> str:
    """A file stem turned into a valid id (forbidden characters become '_')."""
    return _ID_FORBIDDEN.sub("_", name)[:MAX_ID_LENGTH] or "doc"


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file or record, reason)


# ---------------------------------------------------------------------------------------------- records


def document_from_record(record: Mapping[str, Any], *, where: str, source: str | None = None) -> Document:
    """A JSON record (``id``?, ``title``, ``text``, ``url``?, ``published``?, ``meta``?) as a Document."""
    if not isinstance(record, Mapping):
        raise LoadError(f"{where}: expected an object, got {type(record).__name__}")
    text = record.get("text")
    if not isinstance(text, str):
        raise LoadError(f"{where}: field 'text' must be a string")
    if not text.strip():
        raise LoadError(f"{where}: 'text' is empty")
    title = record.get("title") or ""
    if not isinstance(title, str):
        raise LoadError(f"{where}: field 'title' must be a string")
    for name in ("url", "published"):
        if record.get(name) is not None and not isinstance(record.get(name), str):
            raise LoadError(f"{where}: field {name!r} must be a string")
    meta = record.get("meta") or {}
    if not isinstance(meta, Mapping):
        raise LoadError(f"{where}: field 'meta' must be an object")
    # Deeper meta is stored but cannot be served back (pydantic stops serialising at depth 255).
    if _nesting(meta) > MAX_META_DEPTH:
        raise LoadError(f"{where}: field 'meta' nests more than {MAX_META_DEPTH} levels deep")
    raw_id = record.get("id", record.get("_id"))
    try:  # JSON can escape a lone surrogate ("\ud800"): not text, and the checksum cannot encode it
        json.dumps([raw_id, title, text, record.get("url"), record.get("published"), meta], ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        raise LoadError(f"{where}: {exc.object[exc.start : exc.end]!r} is a lone surrogate, not text") from None
    doc_id = str(raw_id) if raw_id not in (None, "") else content_id(title, text)
    try:
        check_document_id(doc_id)
    except ValidationError as exc:
        raise LoadError(f"{where}: {exc}") from exc
    return Document(
        id=doc_id,
        title=title or doc_id,
        text=text,
        url=record.get("url"),
        published=record.get("published"),
        meta=dict(meta),
        source=source,
    )


def _nesting(value: Any) -> int:
    """How deep lists and objects nest in a JSON value; iterative, as the value may nest past the recursion limit."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, Mapping):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def squad_documents(payload: Mapping[str, Any], source: str | None = None) -> list[Document]:
    """Each SQuAD article is one document (id = title), paragraphs joined by a blank line.

    ``meta["paragraph_starts"]`` keeps each paragraph's offset so evaluators can find it.
    """
    docs = []
    for article in payload["data"]:
        text, starts = article_text(article)
        title = str(article["title"])
        docs.append(
            Document(
                id=slug_id(title),
                title=title.replace("_", " "),
                text=text,
                meta={"format": "squad", "paragraph_starts": starts},
                source=source,
            )
        )
    return docs


# ---------------------------------------------------------------------------------------------- text files

_DATE_LINE = re.compile(
    r"^(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*,?\s+)?"
    r"(?:(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?\s+\d{1,2},?\s+\d{4}"
    r"|\d{1,2}\s+(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?,?\s+\d{4}"
    r"|\d{4}-\d{2}-\d{2}(?:[T ][\d:.]+Z?)?)"
    r"(?:,?\s+\d{1,2}:\d{2}\s*(?:[ap]\.?m\.?)?)?\s*$",
    re.IGNORECASE,
)
_BYLINE = re.compile(r"^(?:by\s+)(?P<names>.+)$", re.IGNORECASE)
_NAMES_LINE = re.compile(
    r"^[A-Z][\w'.-]+(?:\s+[A-Z][\w'.-]+){0,3}(?:(?:,\s*|\s+and\s+)[A-Z][\w'.-]+(?:\s+[A-Z][\w'.-]+){0,3})*$"
)
_SOURCE_LINE = re.compile(r"^(?:The\s+)?[A-Z][\w&.'-]*(?:\s+[A-Z][\w&.'-]*){0,4}$")
_HEADER_LINES = 12


def parse_text_document(text: str, *, doc_id: str, source: str | None, markdown: bool = False) -> Document:
    """The seed layout: first line the title; by-line, source and date lines near the top become metadata.

    The text itself is kept whole and unchanged; metadata only describes it.
    """
    lines = [line.strip() for line in text.splitlines()]
    non_empty = [line for line in lines if line]
    if not non_empty:
        raise LoadError("empty")
    title = non_empty[0]
    if markdown:
        title = title.lstrip("#").strip() or title
    meta: dict[str, Any] = {}
    published = None
    for line in non_empty[1:_HEADER_LINES]:
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
    return Document(id=doc_id, title=title, text=text, published=published, meta=meta, source=source)


def html_to_document(html: str, *, doc_id: str, source: str | None) -> Document:
    """Main text of a page: <article> or <main> when present, without scripts, navigation and footers."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
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
    meta: dict[str, Any] = {"format": "html"}
    published = None
    for name in ("article:published_time", "date", "pubdate"):
        tag: Any = soup.find("meta", attrs={"property": name}) or soup.find("meta", attrs={"name": name})
        if tag and tag.get("content"):
            published = str(tag["content"])
            break
    return Document(id=doc_id, title=title or doc_id, text=text, published=published, meta=meta, source=source)


# ---------------------------------------------------------------------------------------------- files


def read_text_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """UTF-8 text of a file, or a LoadError that says why not (too large, binary, bad encoding, empty)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from exc
    if size > max_bytes:
        raise LoadError(f"too large ({size:,} bytes; the limit is {max_bytes:,})")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from exc
    if b"\x00" in raw[:8192]:
        raise LoadError("binary file (NUL bytes)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoadError(f"not valid UTF-8 (byte {exc.start})") from exc
    if not text.strip():
        raise LoadError("empty")
    return text


def load_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> LoadResult:
    result = LoadResult()
    suffix = path.suffix.lower()
    name = str(path)
    try:
        if suffix not in SUPPORTED_SUFFIXES:
            raise LoadError(f"unsupported file type {suffix or '(none)'}")
        text = read_text_file(path, max_bytes)
        if suffix in TEXT_SUFFIXES:
            result.documents.append(
                parse_text_document(text, doc_id=slug_id(path.stem), source=name, markdown=suffix != ".txt")
            )
        elif suffix in HTML_SUFFIXES:
            result.documents.append(html_to_document(text, doc_id=slug_id(path.stem), source=name))
        elif suffix in JSON_SUFFIXES:
            _load_json(text, path, result)
        else:
            _load_jsonl(text, path, result)
    except LoadError as exc:
        result.skipped.append((name, str(exc)))
    return result


def _load_json(text: str, path: Path, result: LoadResult) -> None:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LoadError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    if is_squad(payload):
        result.documents.extend(squad_documents(payload, source=str(path)))
        return
    if isinstance(payload, Mapping) and isinstance(payload.get("documents"), list):
        records = payload["documents"]
    elif isinstance(payload, list):
        records = payload
    elif isinstance(payload, Mapping) and "text" in payload:
        records = [payload]
    else:
        raise LoadError("JSON is neither SQuAD, a list of records, {'documents': [...]}, nor one record")
    for i, record in enumerate(records):
        where = f"{path} record {i + 1}"
        try:
            result.documents.append(document_from_record(record, where=where, source=str(path)))
        except LoadError as exc:
            result.skipped.append((where, str(exc).removeprefix(f"{where}: ")))


def _load_jsonl(text: str, path: Path, result: LoadResult) -> None:
    # split("\n"), not splitlines(): that also splits on U+0085, U+2028 and U+2029, which JSON may leave raw
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path} line {lineno}"
        try:
            record = json.loads(line)
            result.documents.append(document_from_record(record, where=where, source=str(path)))
        except json.JSONDecodeError as exc:
            result.skipped.append((where, f"invalid JSON: {exc.msg}"))
        except LoadError as exc:
            result.skipped.append((where, str(exc).removeprefix(f"{where}: ")))


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files named directly, and every file under named folders (sorted, hidden files skipped)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and not any(part.startswith(".") for part in child.relative_to(path).parts):
                    yield child
        else:
            yield path


def load_paths(paths: Iterable[str | Path], max_bytes: int = DEFAULT_MAX_BYTES) -> LoadResult:
    """Load every document under ``paths``; a later document with the same id replaces an earlier one."""
    result = LoadResult()
    by_id: dict[str, Document] = {}
    for path in iter_files(paths):
        if not path.exists():
            result.skipped.append((str(path), "no such file or folder"))
            continue
        part = load_file(path, max_bytes)
        result.skipped.extend(part.skipped)
        for doc in part.documents:
            if doc.id in by_id:
                result.skipped.append((doc.source or doc.id, f"duplicate id {doc.id!r}; the later one is kept"))
            by_id[doc.id] = doc
    result.documents = list(by_id.values())
    return result
