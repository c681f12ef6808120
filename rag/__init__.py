"""Extractive question answering over your own articles, with hybrid retrieval and exact citations."""

from __future__ import annotations

__version__ = "0.1.0"
