"""Admission control for model work: a few requests compute at once, a bounded queue waits, the rest get 503.

Under overload a client learns at once that it should retry (503 with Retry-After) instead of waiting for a
timeout, and the requests already admitted keep their latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from service.errors import ApiError

T = TypeVar("T")


class Gate:
    def __init__(self, concurrency: int, max_queue: int) -> None:
        self.concurrency = concurrency
        self.max_queue = max_queue
        self.waiting = 0
        self.running = 0
        self.rejected = 0
        self._sem: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        loop = asyncio.get_running_loop()
        if self._sem is None or self._loop is not loop:  # one semaphore per event loop (uvicorn has one)
            self._sem, self._loop = asyncio.Semaphore(self.concurrency), loop
        if self._sem.locked() and self.waiting >= self.max_queue:
            self.rejected += 1
            raise ApiError(503, "the service is busy; retry shortly", "overloaded", headers={"Retry-After": "1"})
        self.waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            return await run_in_threadpool(fn, *args, **kwargs)
        finally:
            self.running -= 1
            self._sem.release()
