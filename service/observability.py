"""Request ids, one structured log line per request, a request-size limit, and Prometheus metrics."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import defaultdict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import BodyTooLarge, error_response

log = logging.getLogger("service.access")

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Counters and latency histograms per route, rendered in the Prometheus text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.buckets: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self.sums: dict[tuple[str, str], float] = defaultdict(float)
        self.answered = 0
        self.no_answer = 0

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1
            counts = self.buckets[(method, route)]
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            counts[-1] += 1
            self.sums[(method, route)] += seconds

    def observe_answer(self, no_answer: bool) -> None:
        with self._lock:
            if no_answer:
                self.no_answer += 1
            else:
                self.answered += 1

    def render(self, gauges: dict[str, float]) -> str:
        lines = [
            "# HELP rag_requests_total HTTP requests by method, route and status.",
            "# TYPE rag_requests_total counter",
        ]
        with self._lock:
            for (method, route, status), n in sorted(self.requests.items()):
                lines.append(f'rag_requests_total{{method="{method}",route="{route}",status="{status}"}} {n}')
            lines += [
                "# HELP rag_request_seconds Request latency by route.",
                "# TYPE rag_request_seconds histogram",
            ]
            for (method, route), counts in sorted(self.buckets.items()):
                labels = f'method="{method}",route="{route}"'
                for bound, n in zip(BUCKETS, counts, strict=False):
                    lines.append(f'rag_request_seconds_bucket{{{labels},le="{bound}"}} {n}')
                lines.append(f'rag_request_seconds_bucket{{{labels},le="+Inf"}} {counts[-1]}')
                lines.append(f"rag_request_seconds_sum{{{labels}}} {self.sums[(method, route)]:.6f}")
                lines.append(f"rag_request_seconds_count{{{labels}}} {counts[-1]}")
            total = self.answered + self.no_answer
            lines += [
                "# HELP rag_answers_total /ask responses by outcome.",
                "# TYPE rag_answers_total counter",
                f'rag_answers_total{{outcome="answered"}} {self.answered}',
                f'rag_answers_total{{outcome="no_answer"}} {self.no_answer}',
                "# HELP rag_no_answer_ratio Share of /ask responses that said no_answer.",
                "# TYPE rag_no_answer_ratio gauge",
                f"rag_no_answer_ratio {self.no_answer / total if total else 0.0:.6f}",
            ]
        for name, value in gauges.items():
            lines += [f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"


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
