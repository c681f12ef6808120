"""Small PDF and Word files, built by the tests themselves: a PDF written by hand (Helvetica, one text line per
``Tj``), a .docx through python-docx."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping, Sequence


def _pdf_string(text: str) -> bytes:
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("cp1252") + b")"


def pdf_bytes(pages: Sequence[Sequence[str]], info: Mapping[str, str] | None = None) -> bytes:
    """A PDF with one page per item of ``pages``, each a list of text lines. An empty list makes a page with a
    drawn box and no text, as a scanned page has no text layer. ``info``: the document information dictionary
    (``{"Title": ..., "Author": ..., "CreationDate": "D:20241108120000Z"}``)."""
    first_page = 4  # 1 catalog, 2 page tree, 3 font; then each page and its content stream
    page_ids = [first_page + 2 * i for i in range(len(pages))]
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % p for p in page_ids) + b"] /Count %d >>" % len(pages),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for page_id, lines in zip(page_ids, pages, strict=True):
        if lines:
            shown = b" T* ".join(_pdf_string(line) + b" Tj" for line in lines)
            content = b"BT /F1 11 Tf 14 TL 72 720 Td " + shown + b" ET"
        else:
            content = b"0.5 g 72 300 468 400 re f"  # a filled box: ink, but no text
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            b"/Contents %d 0 R >>" % (page_id + 1)
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    trailer_info = b""
    if info:
        objects.append(b"<< " + b" ".join(b"/" + k.encode() + b" " + _pdf_string(v) for k, v in info.items()) + b" >>")
        trailer_info = b" /Info %d 0 R" % len(objects)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, trailer_info, xref)
    return bytes(out)


def encrypted_pdf(data: bytes, password: str) -> bytes:
    """``data`` encrypted with a user password (RC4: pypdf needs no other package for it)."""
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=io.BytesIO(data))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_bytes(
    blocks: Sequence[str | tuple[str, str] | list[list[str]]],
    *,
    title: str | None = None,
    author: str | None = None,
    created: dt.datetime | None = None,
) -> bytes:
    """A .docx: each block a paragraph (``str``), a heading (``("heading", text)``) or a table (rows of cells)."""
    import docx

    document = docx.Document()
    props = document.core_properties
    props.title, props.author = title or "", author or ""
    props.created = created or dt.datetime(2000, 1, 1)  # the template's own date is 2013: always set one
    for block in blocks:
        if isinstance(block, str):
            document.add_paragraph(block)
        elif isinstance(block, tuple):
            document.add_heading(block[1], level=1)
        else:
            table = document.add_table(rows=len(block), cols=len(block[0]))
            for row, cells in zip(table.rows, block, strict=True):
                for cell, text in zip(row.cells, cells, strict=True):
                    cell.text = text
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()
