"""Dates as the index keeps them: ISO ``YYYY-MM-DD`` strings, read from whatever an article printed.

Loaders find dates in many shapes ("28 Nov 2024", "2024-11-28T06:00:00+08:00", "Updated November 28, 2024,
6:00 am"); ingest stores the calendar date as ISO so that filters compare strings that sort as dates.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from dateutil import parser as date_parser

from rag.errors import ValidationError

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}")
# Words news sites put around a date line; dateutil would read them as noise or fail on them.
_NOISE = re.compile(r"\b(published|updated|posted|on|at|sgt|gmt|utc|am|pm)\b[:,]?", re.IGNORECASE)
_HAS_YEAR = re.compile(r"\b(1[89]|20)\d{2}\b")


def parse_date(text: str | None) -> dt.date | None:
    """The calendar date a printed date names, or None when it names none (no year: None, not a guess)."""
    if not text:
        return None
    text = text.strip()
    if _ISO.match(text):
        try:
            return dt.date.fromisoformat(text[:10])
        except ValueError:
            return None
    if not _HAS_YEAR.search(text):
        return None
    cleaned = _NOISE.sub(" ", text)
    try:
        return date_parser.parse(cleaned, fuzzy=True, default=dt.datetime(2000, 1, 1)).date()
    except (ValueError, OverflowError):
        return None


def iso_date(text: str | None) -> str | None:
    """``parse_date`` as an ISO string, for ``Document.published``."""
    day = parse_date(text)
    return day.isoformat() if day else None


def filter_date(value: str, name: str) -> dt.date:
    """A date a user gave in a filter: ISO ``YYYY-MM-DD`` (a full ISO timestamp is cut to its date)."""
    try:
        return dt.date.fromisoformat(value.strip()[:10])
    except ValueError:
        raise ValidationError(f"{name} must be an ISO date (YYYY-MM-DD), got {value!r}") from None


def dated(published: str | None, meta: dict[str, Any]) -> str | None:
    """``published`` as an ISO date (None when it names none); the text as printed goes to
    ``meta["published_text"]`` when it was not already that ISO date."""
    if not published or not published.strip():
        return None
    day = iso_date(published)
    if day != published:
        meta["published_text"] = published
    return day
