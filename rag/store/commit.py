"""Commits: which segments make up the index, and the one writer at a time that may change that.

A commit is a generation folder ``gen-NNNNNN/`` holding one ``manifest.json`` (the model, the settings, the
next chunk key and the list of live segments with the checksum of each segment's own manifest). ``CURRENT``
names the live commit and is replaced atomically. The live commit, the ``KEEP_GENERATIONS`` before it and any
younger than ``KEEP_SECONDS`` are kept, with every segment they reference; anything else (older commits,
segments no kept commit lists, a crashed writer's ``.tmp-*``) is removed by the next writer, under the lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag.errors import IndexBusy, IndexCorrupt
from rag.store.files import fsync_dir, fsync_tree, write_json

log = logging.getLogger(__name__)

CURRENT = "CURRENT"
SEGMENTS = "segments"
#: One writer at a time across processes holds this file locked (``fcntl.flock``), as Lucene's write.lock.
LOCK_FILE = "write.lock"
#: How long a writer waits for another one before giving up with IndexBusy.
WRITE_LOCK_TIMEOUT_S = 300.0
#: Generations kept besides the live one after a commit: a process that began loading the previous one a
#: moment ago (another worker, a `rag ask`) still finds its files.
KEEP_GENERATIONS = 2
#: ... and every commit younger than this, with its segments: under many commits a second, the last few commits
#: are milliseconds old, and a process that began loading one must still find its files. (A reader that loses
#: the race anyway starts again from the new CURRENT: rag/store/index.py CorpusIndex.load.)
KEEP_SECONDS = 30.0


def generation_name(number: int) -> str:
    return f"gen-{number:06d}"


def generation_number(name: str) -> int:
    try:
        return int(name.removeprefix("gen-"))
    except ValueError:
        return 0


def next_generation(folder: Path, at_least: int = 0) -> int:
    """Above every generation here, whatever CURRENT says (a rebuild may replace a garbled CURRENT)."""
    return max([at_least, *(generation_number(g.name) for g in folder.glob("gen-*"))]) + 1


def read_current(folder: Path) -> str | None:
    """``CURRENT``'s generation name; None when there is no ``CURRENT``. A ``CURRENT`` that names no
    generation is an error, never "no index" (the next write would otherwise start an empty index)."""
    try:
        name = (folder / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise IndexCorrupt(f"cannot read {folder / CURRENT} ({exc}); {recovery(folder)}") from exc
    if not (name.startswith("gen-") and "/" not in name and (folder / name).is_dir()):
        raise IndexCorrupt(
            f"{folder / CURRENT} names {name[:80]!r}, which is not a generation here; {recovery(folder)}"
        )
    return name


def recovery(folder: Path) -> str:
    kept = sorted((g.name for g in folder.glob("gen-*") if (g / "manifest.json").is_file()), key=generation_number)
    if kept:
        return f"to go back to the newest complete generation: echo {kept[-1]} > {folder / CURRENT}"
    return f"rebuild it with: rag ingest <your files> --index {folder} --rebuild"


def write_commit(folder: Path, number: int, manifest: dict[str, Any]) -> Path:
    """Write generation ``number``'s manifest, switch ``CURRENT`` to it, then remove what no kept commit needs.
    The caller holds the write lock, and has written every segment the manifest lists."""
    name = generation_name(number)
    tmp = folder / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write_json(tmp / "manifest.json", manifest)
    fsync_tree(tmp)
    final = folder / name
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    fsync_dir(folder)
    pointer = folder / f".tmp-{CURRENT}-{os.getpid()}"
    with open(pointer, "w", encoding="utf-8") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(pointer, folder / CURRENT)
    fsync_dir(folder)
    collect_garbage(folder, name)
    return final


def collect_garbage(
    folder: Path, live: str, *, keep_previous: int | None = None, keep_seconds: float | None = None
) -> list[str]:
    """Remove commits older than the ``keep_previous`` before ``live`` (but none younger than ``keep_seconds``)
    and every segment that none of the kept commits lists. Caller holds the write lock (so a ``.tmp-*`` here is
    a crashed writer's); by default ``KEEP_GENERATIONS`` and ``KEEP_SECONDS``. ``keep_previous=0, keep_seconds=0``
    keeps the live commit alone (``rag optimize --purge``: a process loading an older commit then starts again
    from the live one). Returns what could not be removed (path and reason), each also logged: nothing fails
    silently, and ``--purge`` reports it."""
    failures: list[str] = []
    keep_previous = KEEP_GENERATIONS if keep_previous is None else keep_previous  # (read at call time)
    keep_seconds = KEEP_SECONDS if keep_seconds is None else keep_seconds
    older = sorted((g for g in folder.glob("gen-*") if g.name != live), key=lambda g: generation_number(g.name))
    now = time.time()
    for old in older[: max(0, len(older) - keep_previous)]:
        try:
            if now - (old / "manifest.json").stat().st_mtime < keep_seconds:
                continue  # young: a process may have begun reading it a moment ago (many commits a second)
        except OSError:
            pass
        _remove(old, failures)
    referenced: set[str] = set()
    for gen in folder.glob("gen-*"):
        try:
            manifest = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        referenced.update(s["name"] for s in manifest.get("segments", []))
    segments = folder / SEGMENTS
    for seg in segments.glob("*") if segments.is_dir() else ():
        if seg.name not in referenced:
            _remove(seg, failures)
    for failure in failures:
        log.warning("index garbage not removed: %s", failure)
    return failures


def _remove(path: Path, failures: list[str]) -> None:
    """Remove a folder, adding each path that could not be removed (and why) to ``failures``."""

    def failed(function, name, exc_info) -> None:
        failures.append(f"{name}: {exc_info[1]}")

    shutil.rmtree(path, onerror=failed)


def remove_strays(folder: Path) -> None:
    """A crashed writer's unfinished folders (only call under the write lock: then no one else's are here)."""
    for stray in [*folder.glob(".tmp-*"), *(folder / SEGMENTS).glob(".tmp-*")]:
        shutil.rmtree(stray, ignore_errors=True)


@contextlib.contextmanager
def write_lock(folder: str | Path, timeout: float = WRITE_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the index folder's write lock (``write.lock``, ``fcntl.flock``): one writer at a time across
    processes. A second writer waits up to ``timeout`` seconds, then gets IndexBusy. The lock goes with the
    process, so a crashed writer never leaves it held."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+b") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise IndexBusy(
                        f"another writer has held {folder / LOCK_FILE} for over {timeout:.0f} s; "
                        "try again when it is done"
                    ) from None
                time.sleep(0.01)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
