"""Read documents from files and folders: text/Markdown, HTML, PDF, Word (.docx), JSON/JSONL records and SQuAD JSON.

This module walks the folders, gives each file its id and reads it as its suffix says: text, Markdown and HTML
through ``rag.text_documents``, PDF and Word through ``rag.converters``, JSON records through ``rag.records``;
ids are checked and made in ``rag.document_ids``.

Every document keeps its exact original text (for HTML, PDF and Word: the text extracted from the file). Files
that cannot be read are reported with a reason and skipped; the rest are still loaded. A text, HTML, PDF or Word
file's id is its path below the folder given, without the suffix (``tutorial/middleware``), so files of one name
in different folders never share an id.

``published`` is kept as an ISO date (``YYYY-MM-DD``, see ``rag.dates``), the date as printed in
``meta["published_text"]`` when it differed; the publisher, where a file names one, is ``meta["source"]``
(``Document.source`` is the file a document was read from).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

from rag.converters import Converted, docx_to_text, pdf_to_text
from rag.dates import dated
from rag.document_ids import path_id, slug_id
from rag.errors import LoadError
from rag.records import document_from_record, squad_documents
from rag.squad import is_squad
from rag.text_documents import header_metadata, html_to_document, parse_text_document
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


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file or record, reason)


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
