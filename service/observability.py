"""Request ids, one structured log line per request, a request-size limit, and Prometheus metrics."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import BodyTooLarge, error_response

log = logging.getLogger("service.access")

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The methods a label may name; any other (a client can send any token) is counted as "other", so that no client
#: can make the server keep a new series per made-up method. Unmatched paths are one route, "unmatched".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """Counters and latency histograms per route (prometheus_client, one registry per app). Labels take values
    from bounded sets only: the app's routes, the HTTP methods above, the status codes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rag_requests", "HTTP requests by method, route and status.", ["method", "route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "rag_request_seconds", "Request latency by route.", ["method", "route"], buckets=BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.answers = Counter("rag_answers", "/ask responses by outcome.", ["outcome"], registry=self.registry)
        self._lock = threading.Lock()
        self.answered = 0
        self.no_answer = 0
        self._current: dict[str, tuple[str, float]] = {}  # name -> (kind, value), set at each scrape
        self.registry.register(_Current(self))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_answer(self, no_answer: bool) -> None:
        self.answers.labels("no_answer" if no_answer else "answered").inc()
        with self._lock:
            if no_answer:
                self.no_answer += 1
            else:
                self.answered += 1

    def render(self, gauges: dict[str, float], counters: dict[str, float] | None = None) -> str:
        """The exposition text, with ``gauges`` and ``counters`` (totals kept elsewhere, such as the admission
        gate's rejections) as they are now."""
        with self._lock:
            total = self.answered + self.no_answer
            current = {name: ("gauge", value) for name, value in gauges.items()}
            current["rag_no_answer_ratio"] = ("gauge", self.no_answer / total if total else 0.0)
            current |= {name: ("counter", value) for name, value in (counters or {}).items()}
            self._current = current
            return generate_latest(self.registry).decode()


class _Current:
    """A collector of the values ``Metrics.render`` was given (read at scrape time, never stored per label)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self):
        for name, (kind, value) in sorted(self.metrics._current.items()):
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, name.replace("_", " "), value=value)


def route_of(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestMiddleware:
    """Pure ASGI: request id, body-size limit, access log line, latency metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if incoming and len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex[:16]
        status = 500
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            response = error_response(413, f"request body is {int(length):,} bytes; the limit is {self.max_body:,}")
            response.headers["x-request-id"] = request_id
            await response(scope, receive, send)
            self._done(scope, 413, started, request_id)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(f"request body is over the limit of {self.max_body:,} bytes")
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_id)
        except BodyTooLarge as exc:
            status = 413
            response = error_response(413, str(exc))
            await response(scope, receive, send)
        self._done(scope, status, started, request_id)

    def _done(self, scope: Scope, status: int, started: float, request_id: str) -> None:
        seconds = time.perf_counter() - started
        route = route_of(scope)
        self.metrics.observe(scope["method"], route, status, seconds)
        log.info(
            json.dumps(
                {
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "ms": round(seconds * 1000, 2),
                }
            )
        )
