"""Binary documents to text: PDF (pypdf) and Word .docx (python-docx).

A converter returns the text that becomes the document's text (offsets index it) and what the file says
about itself (title, author, creation date); ``rag.loaders`` turns that into a Document. A file that yields no
text, is encrypted or cannot be parsed raises a LoadError that says why, so ingest skips it with that reason.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from dataclasses import dataclass
from typing import Any

from rag.errors import LoadError

#: Paragraphs (Word) and pages (PDF) are joined by a blank line, as the other loaders join blocks.
BLOCK_SEPARATOR = "\n\n"
#: A .docx is a zip: refuse one whose parts unzip to more than this many times the size limit (a zip bomb).
MAX_UNZIP_RATIO = 10
NO_TEXT_LAYER = "no text layer (scanned PDF?)"


@dataclass(frozen=True, slots=True)
class Converted:
    """A file's text and what its properties say; ``page_starts[i]`` is where page i + 1 begins in ``text``."""

    text: str
    title: str | None = None
    author: str | None = None
    created: str | None = None  # ISO date, YYYY-MM-DD
    page_starts: tuple[int, ...] | None = None


# ---------------------------------------------------------------------------------------------- PDF


def pdf_to_text(data: bytes) -> Converted:
    """The text layer of every page, pages joined by a blank line; empty pages keep their place in
    ``page_starts`` (they start where the next page's text starts)."""
    from pypdf import PasswordType, PdfReader

    # Any failure inside the parser is a property of the file (pypdf raises its own errors, but also KeyError,
    # ValueError, RecursionError... on malformed input): one unreadable upload must never fail a whole ingest.
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                decrypted = reader.decrypt("")  # many PDFs are encrypted only to restrict printing or editing
            except Exception as exc:
                raise LoadError(f"encrypted PDF that cannot be opened ({exc})") from exc
            if decrypted == PasswordType.NOT_DECRYPTED:
                raise LoadError("encrypted PDF: it needs a password")
        pages = [_page_text(page) for page in reader.pages]
        info = _pdf_info(reader)
    except LoadError:
        raise
    except Exception as exc:
        raise LoadError(f"not a readable PDF ({type(exc).__name__}: {exc})") from exc
    if not pages:
        raise LoadError("the PDF has no pages")
    parts: list[str] = []
    starts: list[int] = []
    pos = 0
    for text in pages:
        if text and parts:
            pos += len(BLOCK_SEPARATOR)
        starts.append(pos)
        if text:
            parts.append(text)
            pos += len(text)
    if not parts:
        raise LoadError(NO_TEXT_LAYER)
    return Converted(text=BLOCK_SEPARATOR.join(parts), page_starts=tuple(starts), **info)


def _page_text(page: Any) -> str:
    text = page.extract_text() or ""
    return text.replace("\x00", "").strip()


def _pdf_info(reader: Any) -> dict[str, Any]:
    """Title, author and creation date from the document information dictionary, where it has them."""
    meta = reader.metadata
    if meta is None:
        return {}
    info: dict[str, Any] = {"title": _clean(meta.get("/Title")), "author": _author(meta.get("/Author"))}
    try:
        created = meta.creation_date  # parsed from "D:20241108120000Z"; malformed dates raise
    except Exception:
        created = None
    info["created"] = created.date().isoformat() if isinstance(created, dt.datetime) else None
    return info


# ---------------------------------------------------------------------------------------------- Word


def docx_to_text(data: bytes, max_bytes: int) -> Converted:
    """Paragraphs and table rows in document order, one block each (a row's cells joined by " | "); the
    title from the core properties, else the first heading."""
    import docx
    from docx.table import Table

    _check_unzipped_size(data, max_bytes)
    try:
        document = docx.Document(io.BytesIO(data))
        blocks: list[str] = []
        heading: str | None = None
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                blocks.extend(_table_rows(item))
                continue
            text = item.text.strip()
            if not text:
                continue
            style = item.style.name if item.style is not None else ""
            if heading is None and (style == "Title" or style.startswith("Heading")):
                heading = text
            blocks.append(text)
        props = document.core_properties
        title, author, created = _clean(props.title), _author(props.author), props.created
    except Exception as exc:  # as for PDFs: a malformed file is skipped with its reason, never a crash
        raise LoadError(f"not a readable Word file ({type(exc).__name__}: {exc})") from exc
    text = BLOCK_SEPARATOR.join(blocks)
    if not text:
        raise LoadError("no text in the Word file")
    return Converted(
        text=text,
        title=title or heading,
        author=author,
        created=created.date().isoformat() if isinstance(created, dt.datetime) else None,
    )


def _table_rows(table: Any) -> list[str]:
    rows = []
    for row in table.rows:
        seen, cells = set(), []
        for cell in row.cells:  # a merged cell is returned once per grid column it spans
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            if text := " ".join(cell.text.split()):
                cells.append(text)
        if cells:
            rows.append(" | ".join(cells))
    return rows


def _check_unzipped_size(data: bytes, max_bytes: int) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unzipped = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, ValueError) as exc:
        raise LoadError(f"not a Word file: .docx files are zip archives ({exc})") from exc
    limit = MAX_UNZIP_RATIO * max_bytes
    if unzipped > limit:
        raise LoadError(f"unzips to {unzipped:,} bytes; the limit is {limit:,} ({MAX_UNZIP_RATIO} × the size limit)")


def _clean(value: Any) -> str | None:
    text = " ".join(str(value).split()) if value is not None else ""
    return text or None


#: Authors that tools and templates write into a file's properties, not a person's name.
PLACEHOLDER_AUTHORS = frozenset(
    {
        "python-docx",
        "administrator",
        "admin",
        "user",
        "author",
        "unknown",
        "owner",
        "microsoft office user",
        "windows user",
    }
)


def _author(value: Any) -> str | None:
    author = _clean(value)
    return None if author is None or author.lower() in PLACEHOLDER_AUTHORS else author
