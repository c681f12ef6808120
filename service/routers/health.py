"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.schemas.common import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up")
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}}, summary="Models and index loaded")
def readyz(request: Request):
    engine = request.app.state.engine
    if engine is None or not engine.ready:
        detail = request.app.state.startup_error if engine is None else engine.load_error
        return JSONResponse(Health(status="not ready", detail=detail).model_dump(), status_code=503)
    snap = engine.snapshot
    return Health(
        status="ready", documents=len(snap.documents), chunks=len(snap.chunks), reader=engine.pipeline.reader_kind
    )
