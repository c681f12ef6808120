"""Dependencies shared by the routers: the engine, the gate, and the writer check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from rag.engine import Engine
from rag.settings import Settings
from service.errors import ApiError
from service.gate import Gate


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    engine = request.app.state.engine
    if engine is None:
        raise ApiError(503, f"the service is not ready: {request.app.state.startup_error}", "not_ready")
    return engine


def get_gate(request: Request) -> Gate:
    return request.app.state.gate


def require_writer(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> None:
    """Writes need ``Authorization: Bearer <RAG_API_KEY>`` (compared in constant time), or open writes allowed."""
    key = settings.api_key.get_secret_value() if settings.api_key else None
    if not key:
        if settings.allow_open_writes:
            return
        raise ApiError(
            403,
            "writes are disabled: set RAG_API_KEY and send it as 'Authorization: Bearer <key>' "
            "(or RAG_ALLOW_OPEN_WRITES=true for local use)",
            "writes_disabled",
        )
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "this request needs 'Authorization: Bearer <key>'", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise ApiError(403, "the API key is not valid", "invalid_key")


EngineDep = Annotated[Engine, Depends(get_engine)]
GateDep = Annotated[Gate, Depends(get_gate)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
WriterDep = Depends(require_writer)
