"""Read documents from files and folders: text/Markdown, HTML, PDF, Word (.docx), JSON/JSONL records and SQuAD JSON.

Every document keeps its exact original text (for HTML, PDF and Word: the text extracted from the file). Files
that cannot be read are reported with a reason and skipped; the rest are still loaded. A text, HTML, PDF or Word
file's id is its path below the folder given, without the suffix (``tutorial/middleware``), so files of one name
in different folders never share an id.

``published`` is kept as an ISO date (``YYYY-MM-DD``, see ``rag.dates``), the date as printed in
``meta["published_text"]`` when it differed; the publisher, where a file names one, is ``meta["source"]``
(``Document.source`` is the file a document was read from).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

from rag.converters import Converted, docx_to_text, pdf_to_text
from rag.dates import iso_date
from rag.errors import LoadError, ValidationError
from rag.squad import article_text, is_squad
from rag.types import Document

TEXT_SUFFIXES = frozenset({".txt", ".text", ".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
JSON_SUFFIXES = frozenset({".json"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
PDF_SUFFIXES = frozenset({".pdf"})
DOCX_SUFFIXES = frozenset({".docx"})
#: Files whose document takes its id from the file's path (records in JSON and JSONL bring their own).
FILE_ID_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES | DOCX_SUFFIXES
SUPPORTED_SUFFIXES = FILE_ID_SUFFIXES | JSON_SUFFIXES | JSONL_SUFFIXES

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
MAX_ID_LENGTH = 200
MAX_META_DEPTH = 32
_ID_FORBIDDEN = re.compile(r"[\s\\?#%\x00-\x1f\x7f]")
_NAME_FORBIDDEN = re.compile(r"[\s/\\?#%\x00-\x1f\x7f]")  # one part of an id: no '/' either


def check_document_id(doc_id: str) -> str:
    """Ids are used in URLs and chunk ids: no whitespace, '\\', '?', '#', '%' or control characters; a '/'
    separates folder names (``tutorial/middleware``), so no part may be empty, '.' or '..'."""
    if not doc_id or len(doc_id) > MAX_ID_LENGTH:
        raise ValidationError(f"document id must have 1 to {MAX_ID_LENGTH} characters, got {len(doc_id)}")
    if _ID_FORBIDDEN.search(doc_id):
        raise ValidationError(
            f"document id {doc_id!r} contains a character that is not allowed (whitespace, \\ ? # % or control)"
        )
    if any(part in {"", ".", ".."} for part in doc_id.split("/")):
        raise ValidationError(
            f"document id {doc_id!r} has a part that is not allowed: '/' separates folder names, so no part "
            "may be empty, '.' or '..' (and no '/' may start or end the id)"
        )
    return doc_id


def content_id(title: str, text: str) -> str:
    """A stable id derived from the content, for records that bring none."""
    return "doc-" + hashlib.sha256(f"{title}\n{text}".encode()).hexdigest()[:16]


def slug_id(name: str) -> str:
    """A name (a file stem, a title) turned into a valid id without '/' (forbidden characters become '_')."""
    slug = _NAME_FORBIDDEN.sub("_", name)[:MAX_ID_LENGTH]
    return slug if slug and slug not in {".", ".."} else "doc"


def path_id(relative: PurePath, *, suffix: bool = False) -> str:
    """A file's path below the folder given to ingest as an id: ``tutorial/middleware.md`` ->
    ``tutorial/middleware`` (with ``suffix=True``: ``tutorial/middleware.md``)."""
    parts = list((relative if suffix else relative.with_suffix("")).parts)
    doc_id = "/".join(slug_id(part) for part in parts)[:MAX_ID_LENGTH].rstrip("/")
    return doc_id or "doc"


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file or record, reason)


# ---------------------------------------------------------------------------------------------- records


def dated(published: str | None, meta: dict[str, Any]) -> str | None:
    """``published`` as an ISO date (None when it names none); the text as printed goes to
    ``meta["published_text"]`` when it was not already that ISO date."""
    if not published or not published.strip():
        return None
    day = iso_date(published)
    if day != published:
        meta["published_text"] = published
    return day


def document_from_record(record: Mapping[str, Any], *, where: str, source: str | None = None) -> Document:
    """A JSON record (``id``?, ``title``, ``text``, ``url``?, ``published``?, ``source``?, ``meta``?) as a
    Document. The record's ``source`` names its publisher (kept as ``meta["source"]``); the ``source``
    argument is the file the record was read from."""
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
    for name in ("url", "published", "source"):
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
        fields = [raw_id, title, text, record.get("url"), record.get("published"), record.get("source"), meta]
        json.dumps(fields, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        raise LoadError(f"{where}: {exc.object[exc.start : exc.end]!r} is a lone surrogate, not text") from None
    doc_id = str(raw_id) if raw_id not in (None, "") else content_id(title, text)
    try:
        check_document_id(doc_id)
    except ValidationError as exc:
        raise LoadError(f"{where}: {exc}") from exc
    meta = dict(meta)
    if publisher := (record.get("source") or "").strip():
        meta["source"] = publisher
    return Document(
        id=doc_id,
        title=title or doc_id,
        text=text,
        url=record.get("url"),
        published=dated(record.get("published"), meta),
        meta=meta,
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


# ---------------------------------------------------------------------------------------------- files


def unsupported_type(suffix: str) -> str:
    """The reason a file of this type is refused, with the types that are supported."""
    return f"unsupported file type {suffix or '(none)'}; supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}"


def read_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """A file's bytes, or a LoadError that says why not (too large, unreadable)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from exc
    _check_size(size, max_bytes)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from exc


def decode_text(raw: bytes) -> str:
    """The UTF-8 text of a text, HTML or JSON file, or a LoadError that says why not (binary, bad encoding,
    empty). PDF and Word files never pass here: ``rag.converters`` reads their bytes."""
    if b"\x00" in raw[:8192]:
        raise LoadError("binary file (NUL bytes)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoadError(f"not valid UTF-8 (byte {exc.start})") from exc
    if not text.strip():
        raise LoadError("empty")
    return text


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise LoadError(f"too large ({size:,} bytes; the limit is {max_bytes:,})")


def load_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES, doc_id: str | None = None) -> LoadResult:
    """The documents in one file; a text, HTML, PDF or Word file's document takes ``doc_id`` (default: the
    file's stem)."""
    name = str(path)
    try:
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise LoadError(unsupported_type(path.suffix.lower()))
        data = read_file(path, max_bytes)
    except LoadError as exc:
        return LoadResult(skipped=[(name, str(exc))])
    return load_data(data, name, doc_id=doc_id or slug_id(path.stem), max_bytes=max_bytes)


def load_data(data: bytes, name: str, *, doc_id: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> LoadResult:
    """The documents in one file's bytes, read as the type its ``name``'s suffix says; ``name`` is their
    source. A text, HTML, PDF or Word file's document takes ``doc_id`` (default: the name's stem)."""
    result = LoadResult()
    suffix = PurePath(name).suffix.lower()
    doc_id = doc_id or slug_id(PurePath(name).stem)
    try:
        if suffix not in SUPPORTED_SUFFIXES:
            raise LoadError(unsupported_type(suffix))
        _check_size(len(data), max_bytes)
        if suffix in PDF_SUFFIXES:
            result.documents.append(converted_document(pdf_to_text(data), doc_id=doc_id, source=name, kind="pdf"))
        elif suffix in DOCX_SUFFIXES:
            converted = docx_to_text(data, max_bytes)
            result.documents.append(converted_document(converted, doc_id=doc_id, source=name, kind="docx"))
        else:
            text = decode_text(data)
            if suffix in TEXT_SUFFIXES:
                doc = parse_text_document(text, doc_id=doc_id, source=name, markdown=suffix != ".txt")
                result.documents.append(doc)
            elif suffix in HTML_SUFFIXES:
                result.documents.append(html_to_document(text, doc_id=doc_id, source=name))
            elif suffix in JSON_SUFFIXES:
                _load_json(text, name, result)
            else:
                _load_jsonl(text, name, result)
    except LoadError as exc:
        result.skipped.append((name, str(exc)))
    return result


def converted_document(converted: Converted, *, doc_id: str, source: str | None, kind: str) -> Document:
    """A PDF's or Word file's document. Title: the file's own, else its first line. Date, by-line and
    publisher: from the lines below the title as in the seed layout, else the file's creation date and author.
    A PDF's ``meta["page_starts"]`` gives each page's offset in the text (see ``Document.page_at``)."""
    lines = [line.strip() for line in converted.text.splitlines() if line.strip()]
    published, header = header_metadata(lines)
    meta: dict[str, Any] = {"format": kind, **header}
    if converted.author and "byline" not in meta:
        meta["byline"] = converted.author
    if converted.page_starts is not None:
        meta["page_starts"] = list(converted.page_starts)
    return Document(
        id=doc_id,
        title=converted.title or lines[0],
        text=converted.text,
        published=dated(published, meta) or converted.created,
        meta=meta,
        source=source,
    )


def load_uploads(files: Sequence[tuple[str, bytes]], max_bytes: int = DEFAULT_MAX_BYTES) -> LoadResult:
    """Uploaded files as (file name, content), in order. Ids as for files named directly on ``rag ingest``:
    the name's stem (``report.pdf`` -> ``report``), the whole name where two stems collide (``a.md``,
    ``a.pdf``); a folder part in a name is dropped. A name given twice is loaded once."""
    names = [PurePosixPath(name.replace("\\", "/")).name or "upload" for name, _ in files]
    stems: dict[str, int] = {}
    for name in dict.fromkeys(names):
        if PurePath(name).suffix.lower() in FILE_ID_SUFFIXES:
            stems[path_id(PurePath(name))] = stems.get(path_id(PurePath(name)), 0) + 1
    result = LoadResult()
    seen: set[str] = set()
    for name, (_, data) in zip(names, files, strict=True):
        if name in seen:
            result.skipped.append((name, "the same file name was uploaded twice; the first one is kept"))
            continue
        seen.add(name)
        doc_id = path_id(PurePath(name), suffix=stems.get(path_id(PurePath(name)), 0) > 1)
        part = load_data(data, name, doc_id=doc_id, max_bytes=max_bytes)
        result.documents.extend(part.documents)
        result.skipped.extend(part.skipped)
    return result


def _load_json(text: str, name: str, result: LoadResult) -> None:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LoadError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    if is_squad(payload):
        result.documents.extend(squad_documents(payload, source=name))
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
        where = f"{name} record {i + 1}"
        try:
            result.documents.append(document_from_record(record, where=where, source=name))
        except LoadError as exc:
            result.skipped.append((where, str(exc).removeprefix(f"{where}: ")))


def _load_jsonl(text: str, name: str, result: LoadResult) -> None:
    # split("\n"), not splitlines(): that also splits on U+0085, U+2028 and U+2029, which JSON may leave raw
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{name} line {lineno}"
        try:
            record = json.loads(line)
            result.documents.append(document_from_record(record, where=where, source=name))
        except json.JSONDecodeError as exc:
            result.skipped.append((where, f"invalid JSON: {exc.msg}"))
        except LoadError as exc:
            result.skipped.append((where, str(exc).removeprefix(f"{where}: ")))


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Files named directly, and every file under named folders (sorted, hidden files skipped)."""
    for path, _relative in _walk(paths):
        yield path


def _walk(paths: Iterable[str | Path]) -> Iterator[tuple[Path, PurePath]]:
    """Each file with its path below the folder given (for a file named directly: its name alone)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path)
                if child.is_file() and not any(part.startswith(".") for part in relative.parts):
                    yield child, relative
        else:
            yield path, PurePath(path.name)


def plan_files(paths: Iterable[str | Path]) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    """Every file under ``paths`` with the id its document will take, and the files refused for their id.

    The id is the path below the folder given without the suffix (``tutorial/middleware``); a file named
    directly keeps its stem. Files whose ids would still collide (``a.md`` and ``a.txt``) keep their suffix
    (``a.md``, ``a.txt``); a file whose id is still taken (two folders given, both with ``index.md``) is
    refused with a message naming both files. A file reached twice is planned once.
    """
    walked: list[tuple[Path, PurePath]] = []
    seen: set[Path] = set()
    for path, relative in _walk(paths):
        key = path.resolve() if path.exists() else path.absolute()
        if key not in seen:
            seen.add(key)
            walked.append((path, relative))
    named = [path.is_file() and _takes_file_id(path) for path, _ in walked]
    stems: dict[str, int] = {}
    for (_, relative), takes in zip(walked, named, strict=True):
        if takes:
            stems[path_id(relative)] = stems.get(path_id(relative), 0) + 1
    planned: list[tuple[Path, str]] = []
    skipped: list[tuple[str, str]] = []
    owner: dict[str, Path] = {}
    for (path, relative), takes in zip(walked, named, strict=True):
        doc_id = path_id(relative)
        if not takes:  # JSON and JSONL documents bring their own ids
            planned.append((path, doc_id))
            continue
        if stems[doc_id] > 1:
            doc_id = path_id(relative, suffix=True)
        if doc_id in owner:
            skipped.append(
                (
                    str(path),
                    f"its id {doc_id!r} is already taken by {owner[doc_id]}; rename one of them or "
                    "ingest the folders separately",
                )
            )
            continue
        owner[doc_id] = path
        planned.append((path, doc_id))
    return planned, skipped


def _takes_file_id(path: Path) -> bool:
    return path.suffix.lower() in FILE_ID_SUFFIXES


def load_paths(paths: Iterable[str | Path], max_bytes: int = DEFAULT_MAX_BYTES) -> LoadResult:
    """Load every document under ``paths`` (ids as ``plan_files`` gives them).

    Records that bring the same id (JSON, JSONL) are one document: the later one replaces the earlier, and
    the earlier one is reported with the file of the one that replaced it.
    """
    planned, skipped = plan_files(paths)
    result = LoadResult(skipped=skipped)
    by_id: dict[str, Document] = {}
    for path, doc_id in planned:
        if not path.exists():
            result.skipped.append((str(path), "no such file or folder"))
            continue
        part = load_file(path, max_bytes, doc_id=doc_id)
        result.skipped.extend(part.skipped)
        for doc in part.documents:
            if (earlier := by_id.get(doc.id)) is not None:
                where = earlier.source or doc.id
                by = "a later record in the same file" if earlier.source == doc.source else doc.source or doc.id
                result.skipped.append((where, f"duplicate id {doc.id!r}; replaced by {by}"))
            by_id[doc.id] = doc
    result.documents = list(by_id.values())
    return result
