"""A real ``rag serve`` on 127.0.0.1 for the harness, the benchmark, the load test, the soak, the fuzzer and the
write-path scripts."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_command(
    index: str | Path | None, port: int, reader: str | None, workers: int | None = None, extra: Sequence[str] = ()
) -> list[str]:
    """``rag serve`` from this interpreter's environment (the console script sits beside ``sys.executable``);
    ``extra``: more of its options (``--ray ADDRESS``...)."""
    script = Path(sys.executable).parent / "rag"
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", "from cli import main; main()"]
    cmd += ["serve", "--host", "127.0.0.1", "--port", str(port)]
    if index is not None:
        cmd += ["--index", str(index)]
    if reader is not None:
        cmd += ["--reader", reader]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    return cmd + list(extra)


@dataclass
class Server:
    url: str
    pid: int | None  # None: a service we did not start
    log: Path | None
    startup_s: float
    health: dict = field(default_factory=dict)

    def memory_mib(self, name: str = "VmHWM") -> float:
        """``VmRSS`` (now) or ``VmHWM`` (peak) of the server process, from /proc/<pid>/status."""
        if self.pid is None:
            return float("nan")
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")


def wait_ready(url: str, proc: subprocess.Popen | None, log: Path | None, ready_s: float) -> dict:
    """Poll /readyz until 200; fail fast when the process exits or the service says why it is not ready."""
    deadline = time.monotonic() + ready_s
    with httpx.Client(base_url=url, timeout=10) as client:
        while True:
            if proc is not None and proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:] if log else ""
                raise RuntimeError(f"rag serve exited with code {proc.returncode}:\n{tail}")
            try:
                r = client.get("/readyz")
                if r.status_code == 200:
                    return r.json()
                if r.status_code == 503 and r.json().get("detail"):
                    raise RuntimeError(f"the service is up but not ready: {r.json()['detail']}")
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service at {url} was not ready after {ready_s:.0f} s")
            time.sleep(0.2)


@contextmanager
def serve(
    index: Path,
    log: Path,
    *,
    reader: str | None = None,
    env: dict[str, str] | None = None,
    ready_s: float = 300,
    cwd: Path | None = None,
    port: int | None = None,
    workers: int | None = None,
    grace_s: float = 20,
    extra: Sequence[str] = (),
) -> Iterator[Server]:
    """``rag serve --index INDEX --port P [--reader R] [--workers W] [EXTRA...]``, ready (/readyz) when yielded,
    stopped after.
    ``port``: a free one when None. With ``workers`` the server runs in a process group of its own, and the
    whole group (uvicorn's supervisor and its worker processes) is stopped; ``grace_s``: how long it may take
    to stop before it is killed."""
    port = port or free_port()
    environ = {**os.environ, "RAG_LOG_LEVEL": "info", **(env or {})}
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            serve_command(index, port, reader, workers, extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=environ,
            cwd=cwd,
            start_new_session=workers is not None,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        health = wait_ready(url, proc, log, ready_s)
        yield Server(url, proc.pid, log, time.perf_counter() - started, health)
    finally:
        stop(proc, grace_s=grace_s, group=workers is not None)


def stop(proc: subprocess.Popen, *, grace_s: float, group: bool = False) -> None:
    """Ask a server process to stop (SIGTERM), and kill it if it has not within ``grace_s`` seconds; ``group``:
    signal its whole process group (started with ``start_new_session``), workers included."""

    def send(sig: signal.Signals) -> None:
        if group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)

    send(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait()
