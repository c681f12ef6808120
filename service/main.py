"""Builds the FastAPI app: models and index load once, in the lifespan, never per request."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

import rag
from rag.engine import Engine
from rag.errors import RagError
from rag.settings import Settings
from service import errors
from service.gate import Gate
from service.observability import Metrics, RequestMiddleware
from service.routers import ask, documents, health, pages

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
        yield

    app = FastAPI(
        title="rag: extractive question answering",
        version=rag.__version__,
        description="Ask questions over your articles; every answer is a span copied from a source, with its citation.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.startup_error = None
    app.state.gate = Gate(settings.max_concurrency, settings.max_queue)
    app.state.metrics = Metrics()
    errors.install(app)
    app.include_router(ask.router)
    app.include_router(documents.router)
    app.include_router(health.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")
    app.add_middleware(RequestMiddleware, metrics=app.state.metrics, max_body=settings.max_request_bytes)
    return app


def app_factory() -> FastAPI:
    """For ``uvicorn --factory service.main:app_factory``."""
    return create_app()
