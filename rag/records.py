"""JSON records and SQuAD articles -> Document: each field checked, with an error that names the record.

The record's ``source`` names its publisher (kept as ``meta["source"]``); ``Document.source`` is the file the
record was read from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rag.dates import dated
from rag.document_ids import check_document_id, content_id, slug_id
from rag.errors import LoadError, ValidationError
from rag.squad import article_text
from rag.types import Document

MAX_META_DEPTH = 32


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
