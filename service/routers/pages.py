"""The web page and the metrics endpoint."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, PlainTextResponse

router = APIRouter()

STATIC = Path(__file__).resolve().parent.parent / "static"


#: Only our own script and styles run on the page; it cannot be framed; nothing leaks in referrers.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@router.get("/", include_in_schema=False)
def index_page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get("/metrics", response_class=PlainTextResponse, tags=["health"], summary="Prometheus metrics")
def metrics(request: Request) -> PlainTextResponse:
    engine = request.app.state.engine
    gauges: dict[str, float] = {
        "rag_ready": float(bool(engine and engine.ready)),
        "rag_queue_waiting": float(request.app.state.gate.waiting),
    }
    if engine is not None and engine.ready:
        snap = engine.snapshot
        gauges["rag_index_documents"] = float(len(snap.documents))
        gauges["rag_index_chunks"] = float(len(snap.chunks))
        gauges["rag_index_generation"] = float(snap.generation)
    return PlainTextResponse(
        request.app.state.metrics.render(gauges, {"rag_requests_rejected": float(request.app.state.gate.rejected)}),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )
