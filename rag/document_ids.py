"""Document ids: checked (they appear in URLs and chunk ids), derived from content, names and paths.

A text, HTML, PDF or Word file's id is its path below the folder given, without the suffix
(``tutorial/middleware``), so files of one name in different folders never share an id.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import PurePath

from rag.errors import ValidationError

MAX_ID_LENGTH = 200
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
