"""The running system: models, the live index snapshot, and the one writer.

Reads take the current snapshot (one reference read, no lock) and work on it; writes are serialised by a lock
(and across processes by the index folder's write lock), build a new snapshot that shares every untouched
segment, save the new segment and commit, and then swap the reference. A query therefore sees the corpus either
before or after a change, never half of one. Segments are merged in a background thread (rag/store/merge.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from rag import dense
from rag.embedding import Embedder, model_checksum
from rag.errors import IndexNotFound, RagError, ReadOnlyIndex
from rag.filters import Filters
from rag.pipeline import QAPipeline
from rag.settings import Settings
from rag.shards import ShardedIndex, is_sharded
from rag.store import CorpusIndex, RemoteIndex, Segment, current_generation, merge, replace_segments, write_lock
from rag.types import AskResult, Document, Hit, IngestReport

log = logging.getLogger("rag.engine")


def model_record(embedder: Embedder) -> dict:
    """What an index records of its embedding model. The runtime (``backend``) is recorded for the reader of
    the manifest; the backends' vectors agree to cosine >= 0.99, so a change of runtime is not a mismatch."""
    return {
        "id": embedder.model_id,
        "checksum": model_checksum(embedder.folder),
        "dim": embedder.dim,
        "max_seq_length": embedder.max_seq_length,
        "backend": embedder.backend,
    }


#: How often a serving engine looks for a commit made by another process (one stat of CURRENT).
REFRESH_INTERVAL_S = 1.0


class Engine:
    """``pipeline`` answers questions; an engine opened only to write (``rag ingest``) needs just the embedder."""

    def __init__(self, settings: Settings, embedder: Embedder, pipeline: QAPipeline | None = None) -> None:
        self.settings = settings
        self.embedder = embedder
        self._pipeline = pipeline
        self.model = model_record(embedder)
        self.index_dir = Path(settings.index_dir)
        self._snapshot: CorpusIndex | None = None
        self._write_lock = threading.Lock()
        self.load_error: str | None = None
        self._missing = False  # no index on disk yet: the first write creates one
        self._checked_at = time.monotonic()
        self._current_problem: str | None = None  # the last unreadable CURRENT logged (each problem once)
        self._refreshing = threading.Lock()
        #: Merge segments in a background thread after writes (``False``: only when ``merge_once`` is called).
        self.background_merges = True
        self._merger: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        self._watching = threading.Event()

    @classmethod
    def open(cls, settings: Settings, *, create: bool = False, read: bool = True) -> Engine:
        """Load models and the index. A missing or broken index is remembered in ``load_error`` (unless
        ``create`` asks for an empty one), so that a service can start and say why it is not ready."""
        # One query vector per search: FAISS's OpenMP threads only add hand-off cost (measured ~7 ms per
        # search on 2 cores against 0.06 ms on one thread), so a serving process searches single-threaded.
        dense.set_search_threads(1)
        embedder = Embedder(backend=settings.embed_backend, threads=settings.threads).load()
        pipeline = None
        if read:
            pipeline = QAPipeline.load(
                settings.reader,
                reader_dir=settings.reader_dir,
                retrieval=settings.retrieval_settings(),
                settings=settings.ask_settings(),
                threads=settings.threads,
                embedder=embedder,
                backend=settings.reader_backend,
            )
        engine = cls(settings, embedder, pipeline)
        engine.reload(create=create)
        return engine

    @property
    def pipeline(self) -> QAPipeline:
        if self._pipeline is None:
            raise RagError("this engine was opened for writing only")
        return self._pipeline

    def reload(self, *, create: bool = False, reuse: CorpusIndex | None = None) -> None:
        """Load the live commit (``reuse``: a snapshot of this folder whose segments need not be read again)."""
        self._missing = False
        try:
            if self.settings.ray_address:  # shards served by Ray Serve replicas (rag serve --ray); this process routes
                from rag.distributed.serving import connect

                self._snapshot = connect(self.index_dir, self.settings, self.model)
            elif is_sharded(self.index_dir):  # served read-only: written by `rag ingest --shards N`
                self._snapshot = ShardedIndex.load(
                    self.index_dir, settings=self.settings.index_settings(), model=self.model
                )
            else:
                self._snapshot = CorpusIndex.load(
                    self.index_dir, settings=self.settings.index_settings(), model=self.model, reuse=reuse
                )
            self.load_error = None
        except IndexNotFound as exc:
            self._missing = True
            if create:
                self._snapshot = CorpusIndex.empty(self.settings.index_settings(), self.model)
                self.load_error = None
            else:
                self._snapshot, self.load_error = None, str(exc)
        except RagError as exc:
            self._snapshot, self.load_error = None, str(exc)
        if self.load_error:
            log.error("index not loaded: %s", self.load_error)

    @property
    def ready(self) -> bool:
        return self._snapshot is not None

    @property
    def snapshot(self) -> CorpusIndex:
        snap = self._snapshot
        if snap is None:
            raise IndexNotFound(self.load_error or f"no index loaded from {self.index_dir}")
        self._notice_commits(snap)
        return snap

    def _notice_commits(self, snap: CorpusIndex) -> None:
        """At most once a second, look whether another process committed (``CURRENT`` names a newer
        generation); if so, load it in a background thread and swap it in when loaded. Reads go on against
        the snapshot they have meanwhile, so a second service worker sees a write within about a second plus
        the load time, without a restart and without blocking a request."""
        now = time.monotonic()
        if now - self._checked_at < REFRESH_INTERVAL_S or self._refreshing.locked() or is_sharded(self.index_dir):
            return  # (a routed index's shards follow their own commits)
        self._checked_at = now
        try:
            latest = current_generation(self.index_dir)
        except RagError as exc:
            # A garbled CURRENT: keep serving what is loaded (a writer will refuse it with the reason), and say so,
            # once per distinct problem rather than every second.
            if str(exc) != self._current_problem:
                self._current_problem = str(exc)
                log.warning(
                    "the index's CURRENT cannot be read; still serving %s: %s", f"gen-{snap.generation:06d}", exc
                )
            return
        self._current_problem = None
        if latest is None or latest == f"gen-{snap.generation:06d}":
            return

        def load() -> None:
            with self._refreshing:
                try:
                    fresh = CorpusIndex.load(
                        self.index_dir, settings=self.settings.index_settings(), model=self.model, reuse=snap
                    )
                except RagError as exc:
                    log.warning("a newer commit (%s) could not be loaded: %s", latest, exc)
                    return
                with self._write_lock:
                    current = self._snapshot
                    if current is None or fresh.generation > current.generation:
                        self._snapshot = fresh
                        log.info("index: now serving %s (committed by another process)", latest)

        threading.Thread(target=load, name="rag-index-refresh", daemon=True).start()

    def watch_commits(self) -> None:
        """Look for other processes' commits every REFRESH_INTERVAL_S in a background thread (a serving process),
        so that an idle worker is current by the time a request comes, not one request later."""
        if self._watcher is not None and self._watcher.is_alive():
            return
        self._watching.clear()

        def watch() -> None:
            while not self._watching.wait(REFRESH_INTERVAL_S / 2):  # _notice_commits looks once a second
                snap = self._snapshot
                if snap is not None:
                    self._notice_commits(snap)

        self._watcher = threading.Thread(target=watch, name="rag-commit-watch", daemon=True)
        self._watcher.start()

    def stop_watching(self) -> None:
        self._watching.set()

    # ------------------------------------------------------------------------------------------- reads

    def ask(
        self,
        question: str,
        top_k: int = 5,
        max_answers: int | None = None,
        filters: Filters | None = None,
        min_score: float | None = None,
    ) -> AskResult:
        return self.pipeline.ask(self.snapshot, question, top_k, max_answers, filters=filters, min_score=min_score)

    def ask_batch(
        self,
        questions: Sequence[str],
        top_k: int = 5,
        max_answers: int | None = None,
        filters: Filters | None = None,
        min_score: float | None = None,
    ) -> list[AskResult]:
        """Many questions against one snapshot, read together (see QAPipeline.ask_batch)."""
        return self.pipeline.ask_batch(
            self.snapshot, questions, top_k, max_answers, filters=filters, min_score=min_score
        )

    def search(
        self, query: str, k: int = 10, filters: Filters | None = None
    ) -> tuple[list[Hit], dict[str, float], CorpusIndex]:
        snap = self.snapshot
        hits, timings = self.pipeline.search(snap, query, k, filters)
        return hits, timings, snap

    # ------------------------------------------------------------------------------------------- writes

    def upsert(
        self, documents: Sequence[Document], *, skipped: Sequence[tuple[str, str]] = (), progress=None
    ) -> IngestReport:
        return self.write(documents, (), skipped=skipped, progress=progress)

    def delete(self, doc_ids: Sequence[str]) -> IngestReport:
        return self.write((), doc_ids)

    def write(
        self,
        upserts: Sequence[Document],
        deletes: Sequence[str],
        *,
        skipped: Sequence[tuple[str, str]] = (),
        progress=None,
        fresh: bool = False,
    ) -> IngestReport:
        """Apply changes to the latest commit, save the new generation, then make it the live snapshot.

        ``fresh``: start from an empty index instead (``rag ingest --rebuild``): the new index is built beside
        the old one, which stays live until the commit switches ``CURRENT``.

        The index folder's write lock is held from reading the latest commit to switching ``CURRENT``: another
        process (a second service worker, a `rag ingest`) that committed since this engine loaded its snapshot
        is read first, so its documents are kept, and two writers never pick the same generation.

        A routed index (``rag serve --ray``) sends each document to the shard that owns it, which writes it so."""
        if isinstance(routed := self._snapshot, RemoteIndex):
            if fresh:
                raise ReadOnlyIndex("a routed index is rebuilt shard by shard: rag ingest ... --shards N --rebuild")
            report = routed.write(upserts, deletes)
            return replace(report, skipped=tuple(skipped) + report.skipped)
        with self._write_lock, write_lock(self.index_dir):
            if fresh:
                empty = CorpusIndex.empty(self.settings.index_settings(), self.model)
                updated, report = empty.apply(upserts, (), embedder=self.embedder, progress=progress, skipped=skipped)
                updated.save(self.index_dir, locked=True)
                self._snapshot, self.load_error, self._missing = updated, None, False
                return report
            latest = current_generation(self.index_dir)
            if latest is None and self._snapshot is None and self._missing:
                self._snapshot = CorpusIndex.empty(self.settings.index_settings(), self.model)
                self.load_error = None
            elif latest is not None and not is_sharded(self.index_dir):
                snap = self._snapshot
                if snap is None or f"gen-{snap.generation:06d}" != latest:
                    self.reload(reuse=snap)  # another writer committed since: start from its commit
            base = self.snapshot
            updated, report = base.apply(upserts, deletes, embedder=self.embedder, progress=progress, skipped=skipped)
            if report.changed:
                updated.save(self.index_dir, locked=True)
                self._snapshot = updated
        if report.changed:
            self._schedule_merges()
        return report

    # ------------------------------------------------------------------------------------------- merges

    def _schedule_merges(self) -> None:
        """Merge in a background thread what the merge policy asks for (one thread at a time)."""
        if not self.background_merges:
            return
        thread = self._merger
        if thread is not None and thread.is_alive():
            return
        self._merger = threading.Thread(target=self._merge_quietly, name="rag-merge", daemon=True)
        self._merger.start()

    def _merge_quietly(self) -> None:
        try:
            while self.merge_once():
                pass
        except RagError as exc:  # the index stays as committed; the next write tries again
            log.warning("segment merge skipped: %s", exc)

    def wait_for_merges(self) -> None:
        """Block until a background merge (if any) has committed (``rag ingest`` waits before it exits)."""
        thread = self._merger
        if thread is not None:
            thread.join()

    def merge_once(self, policy: Callable[[Sequence[int], Sequence[int]], tuple[int, int] | None] = merge.plan) -> bool:
        """Merge the run of adjacent segments ``policy`` picks from the live snapshot; True when committed.

        The merged segment is built outside every lock (the slow part: FAISS and BM25 over its chunks, nothing
        embedded); the write lock is held only to check that those segments are still live and adjacent in the
        latest commit and to commit the swap, so reads never wait and writes wait for one small commit. A segment
        that lost documents meanwhile also calls the merge off (merged, they would come back)."""
        snap = self._snapshot
        if snap is None or isinstance(snap, ShardedIndex | RemoteIndex):
            return False
        run = policy([s.size for s in snap.segments], [s.dead for s in snap.segments])
        if run is None:
            return False
        chosen = snap.segments[run[0] : run[1]]
        names = [(s.name, s.deleted) for s in chosen]
        if any(name is None for name, _ in names):
            return False
        started = time.perf_counter()
        joined = Segment.merge(chosen, snap.settings)
        with self._write_lock, write_lock(self.index_dir):
            latest = current_generation(self.index_dir)
            if self._snapshot is None or latest != f"gen-{self._snapshot.generation:06d}":
                self.reload(reuse=self._snapshot)
            base = self._snapshot
            if base is None:
                return False
            live = [(s.name, s.deleted) for s in base.segments]
            at = live.index(names[0]) if names[0] in live else -1
            if at < 0 or live[at : at + len(names)] != names:
                return False  # a write rewrote one of them meanwhile: the policy will pick again
            updated = replace_segments(base, base.segments[:at] + [joined] + base.segments[at + len(names) :])
            updated.save(self.index_dir, locked=True)
            self._snapshot = updated
        log.info(
            "merged %d segments (%d chunks) into one in %.2f s", len(names), joined.size, time.perf_counter() - started
        )
        return True
