"""Reach the service under evaluation: ``remote`` (a running one, ``--url``), ``in_process`` (the app behind
``httpx.ASGITransport``, lifespan run by hand) and ``served`` (``rag serve`` started as a subprocess on a free
port, stopped afterwards); ``Target`` names which, and each waits for ``GET /readyz``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from rag.evaluation.results import REQUEST_TIMEOUT_S, Mode
from rag.evaluation.server import free_port, serve_command, stop


class ServiceUnavailable(RuntimeError):
    """The service could not be reached, or never became ready; the message says why."""


async def wait_ready(client: httpx.AsyncClient, timeout_s: float, proc: subprocess.Popen | None = None) -> dict:
    """Poll GET /readyz until 200 and return its body; raise ServiceUnavailable on timeout, exit or a 503 with
    a reason (the lifespan has finished, so it will not become ready by itself)."""
    deadline = time.monotonic() + timeout_s
    last = "no response yet"
    while True:
        if proc is not None and proc.poll() is not None:
            raise ServiceUnavailable(f"the service exited with code {proc.returncode} before it was ready")
        try:
            response = await client.get("/readyz", timeout=10)
            if response.status_code == 200:
                return response.json()
            body = _json(response)
            last = f"HTTP {response.status_code}: {body.get('detail') or response.text[:200]}"
            if response.status_code == 503 and body.get("detail"):
                raise ServiceUnavailable(f"the service is up but not ready: {body['detail']}")
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"the service was not ready after {timeout_s:.0f} s (last: {last})")
        await asyncio.sleep(0.5)


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _client(**kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=10), **kwargs)


@asynccontextmanager
async def remote(url: str, ready_timeout_s: float = 120) -> AsyncIterator[tuple[httpx.AsyncClient, dict]]:
    """A service that is already running; yields the client and the /readyz body."""
    async with _client(base_url=url.rstrip("/")) as client:
        yield client, await wait_ready(client, ready_timeout_s)


@asynccontextmanager
async def in_process(
    settings: Any, app_factory: Callable[..., Any], engine: Any = None
) -> AsyncIterator[tuple[httpx.AsyncClient, dict]]:
    """The app ``app_factory(settings, engine=engine)`` in this process (the caller passes the service's
    ``create_app``: the library does not import the service); ``engine`` (already loaded) skips opening one."""
    app = app_factory(settings, engine=engine)
    # ASGITransport does not run the lifespan, so run it here: it opens the engine when none was given.
    async with (
        app.router.lifespan_context(app),
        _client(transport=httpx.ASGITransport(app=app), base_url="http://in-process") as client,
    ):
        yield client, await wait_ready(client, 5)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@asynccontextmanager
async def served(
    index: str | Path | None, reader: str | None, ready_timeout_s: float = 120
) -> AsyncIterator[tuple[httpx.AsyncClient, dict]]:
    """Start ``rag serve`` on a free port, wait for /readyz, and stop it afterwards (its log goes to a temp
    file, quoted in the error when it never gets ready)."""
    port = free_port()
    log_fd, log_name = tempfile.mkstemp(prefix="rag-eval-serve-", suffix=".log")
    log_path = Path(log_name)
    with os.fdopen(log_fd, "w") as log:
        proc = subprocess.Popen(
            serve_command(index, port, reader), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    failed = True
    try:
        async with _client(base_url=f"http://127.0.0.1:{port}") as client:
            try:
                ready = await wait_ready(client, ready_timeout_s, proc)
            except ServiceUnavailable as exc:
                raise ServiceUnavailable(f"{exc}\n--- server log ({log_path}) ---\n{_tail(log_path)}") from None
            yield client, ready
        failed = False
    finally:
        stop(proc, grace_s=15)
        if not failed:
            log_path.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class Target:
    """Where the service is: ``url`` (running), ``in-process`` (``settings``/``engine``) or ``serve``."""

    mode: Mode
    url: str | None = None
    index: Path | None = None
    reader: str | None = None
    settings: Any = None  # rag.settings.Settings for in-process
    engine: Any = None  # a loaded rag.engine.Engine to reuse in-process (tests)
    app_factory: Callable[..., Any] | None = None  # in-process: the service's create_app(settings, engine=...)
    ready_timeout_s: float = 120.0

    def connect(self) -> AbstractAsyncContextManager[tuple[httpx.AsyncClient, dict]]:
        """An async context that yields a client for the ready service and its /readyz body."""
        if self.mode == "url":
            if not self.url:
                raise ValueError("mode 'url' needs a url")
            return remote(self.url, self.ready_timeout_s)
        if self.mode == "in-process":
            settings = self.settings
            if settings is None:
                from rag.settings import Settings

                overrides: dict[str, Any] = {"index_dir": self.index, "reader": self.reader}
                settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
            if self.app_factory is None:
                raise ValueError("mode 'in-process' needs app_factory (service.main.create_app)")
            return in_process(settings, self.app_factory, self.engine)
        return served(self.index, self.reader, self.ready_timeout_s)
