"""Builds the FastAPI app: models and index load once, in the lifespan, never per request."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

import rag
from rag.engine import Engine
from rag.errors import RagError
from rag.feedback import FeedbackStore
from rag.settings import Settings
from service import errors
from service.deps import WriteGuard
from service.gate import Gate
from service.observability import Metrics, RequestMiddleware
from service.routers import ask, documents, feedback, health, pages

log = logging.getLogger("service")


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """The app. ``engine`` lets tests share one loaded engine; otherwise it is opened at start-up."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if app.state.engine is None:
            try:
                app.state.engine = Engine.open(settings)
            except RagError as exc:  # models missing: stay up, say why on /readyz
                app.state.startup_error = str(exc)
                log.error("start-up failed: %s", exc)
        if app.state.engine is not None:
            app.state.engine.watch_commits()  # another worker's or a `rag ingest`'s commits, even when idle
        yield
        if app.state.engine is not None:
            app.state.engine.stop_watching()

    # FastAPIOffline: FastAPI whose /docs and /redoc load their assets from the package, not from a CDN.
    app = FastAPIOffline(
        title="rag: extractive question answering",
        version=rag.__version__,
        description="Ask questions over your articles; every answer is a span copied from a source, with its citation.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.startup_error = None
    app.state.gate = Gate(settings.max_concurrency, settings.max_queue)
    app.state.write_gate = Gate(1, settings.max_queue)
    app.state.metrics = Metrics()
    app.state.feedback = FeedbackStore(settings.feedback_path(), settings.feedback_max_bytes)
    app.state.feedback_limit = feedback.RateLimit(settings.feedback_per_minute)
    errors.install(app)
    app.include_router(ask.router)
    app.include_router(documents.router)
    app.include_router(feedback.router)
    app.include_router(health.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")
    app.add_middleware(WriteGuard, settings=settings)  # inside RequestMiddleware: refusals are logged and counted
    app.add_middleware(RequestMiddleware, metrics=app.state.metrics, max_body=settings.max_request_bytes)
    build_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            query_params_without_null(build_openapi())  # FastAPI's schema, cached on the app, adjusted in place
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def query_params_without_null(schema: dict) -> None:
    """Optional query parameters described as what a query string can carry.

    ``source: str | None = None`` comes out as ``anyOf: [string, null]``, but a query string cannot send a JSON
    null (a parameter is absent or a string); the null branch made schema-based fuzzers send ``source=false``
    as "schema-violating" data, which on the wire is the valid string "false"."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for param in operation.get("parameters", []) if isinstance(operation, dict) else []:
                inner = param.get("schema", {})
                branches = inner.get("anyOf")
                if param.get("in") == "query" and branches and {"type": "null"} in branches:
                    rest = [b for b in branches if b != {"type": "null"}]
                    if len(rest) == 1:
                        param["schema"] = {**{k: v for k, v in inner.items() if k != "anyOf"}, **rest[0]}


def app_factory() -> FastAPI:
    """For ``uvicorn --factory service.main:app_factory``."""
    return create_app()
