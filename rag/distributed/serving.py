"""Shards served as Ray Serve deployments, and the router's handles to them (``rag serve --ray ADDRESS``).

Each shard of a sharded index (rag/shards.py) is a Serve application of its own, ``rag-shard-NNN``, with one
deployment whose replicas (any number, placed by Ray on any node) each open the shard's folder as a
``ShardServer``. The HTTP service (uvicorn, the same FastAPI app) is the router: it embeds the question,
asks the shards through their handles (``RoutedIndex``), runs the reader on the best passages and cites them.
Serve's own HTTP proxy is not started: the API is the service's, unchanged.

Serve replaces a replica that dies. A call to one that died is sent again (``RETRIES`` times, to a live replica)
before it fails, so a replica's death costs at most the requests it held. The shard folders must be readable
and writable at the same path from every node (one machine, or a shared file system): replicas of one shard
commit to, and follow, the same folder.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.distributed.driver import INSTALL_HINT
from rag.distributed.routing import RoutedIndex
from rag.distributed.shard_server import ShardServer
from rag.errors import IndexMismatch, IndexNotFound, RagError, ShardsUnavailable
from rag.settings import Settings
from rag.shards import is_sharded, read_manifest

log = logging.getLogger("rag.distributed")

#: The Serve application of shard ``n``.
APP = "rag-shard-{:03d}"
NAMESPACE = "rag"
#: A call to a replica that died (or is not reachable) is sent again this many times, after a short pause.
RETRIES = 3
RETRY_PAUSE_S = 0.5
CALL_TIMEOUT_S = 60.0


def connect_ray(address: str | None) -> None:
    """Join the Ray cluster at ``address`` ("auto": the one this machine runs) and its Serve instance."""
    try:
        import ray
        from ray import serve
    except ImportError as exc:  # pragma: no cover - the serving install has no Ray
        raise RagError(INSTALL_HINT.replace("ray[data]", "ray[data,serve]")) from exc
    if not ray.is_initialized():
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    serve.start(proxy_location="Disabled")  # the API is served by uvicorn, not by Serve's proxy


class ShardReplica(ShardServer):
    """What a Serve replica runs: shard ``number``'s server, opened in the replica's process."""

    def __init__(self, folder: str, number: int, count: int, settings: Settings) -> None:
        opened = ShardServer.open(folder, number, count, settings)
        super().__init__(opened.engine, folder, number, count)


def deploy(folder: str | Path, settings: Settings, *, replicas: int = 2, cpus: float = 0.5, threads: int = 1) -> int:
    """Deploy (or update) one application per shard of the sharded index ``folder``; the number of shards.
    Returns once every replica has loaded its shard."""
    from ray import serve

    folder = Path(folder).resolve()
    if not is_sharded(folder):
        raise IndexNotFound(f"{folder} is not a sharded index: build one with rag ingest PATH... --shards N")
    count = len(read_manifest(folder)["shards"])
    replica_settings = settings.model_copy(update={"threads": threads, "ray_address": None})
    deployment = serve.deployment(
        name="shard",
        num_replicas=replicas,
        ray_actor_options={"num_cpus": cpus},
        health_check_period_s=2,
        graceful_shutdown_timeout_s=5,
    )(ShardReplica)
    started = time.perf_counter()
    for number in range(count):
        app = deployment.bind(str(folder), number, count, replica_settings)
        serve.run(app, name=APP.format(number), route_prefix=None)
    log.info("%d shards x %d replicas deployed in %.1f s", count, replicas, time.perf_counter() - started)
    return count


@dataclass
class ServeCall:
    """A call to one of a shard's replicas; sent again when the replica it went to died."""

    handle: Any
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    response: Any = field(init=False)

    def __post_init__(self) -> None:
        self.response = getattr(self.handle, self.method).remote(*self.args, **self.kwargs)

    def result(self) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self._result()
        # On an event loop's thread (a service's start-up, an async route), where Serve refuses to block: wait in
        # a worker thread.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(self._result).result()

    def _result(self) -> Any:
        from ray.exceptions import ActorUnavailableError, RayActorError

        for attempt in range(RETRIES + 1):
            try:
                return self.response.result(timeout_s=CALL_TIMEOUT_S)
            except (RayActorError, ActorUnavailableError) as exc:
                if attempt == RETRIES:
                    raise ShardsUnavailable(f"no replica of {self.handle.app_name} answered: {exc}") from exc
                log.warning("a shard replica failed (%s); sending %s again", type(exc).__name__, self.method)
                time.sleep(RETRY_PAUSE_S * (attempt + 1))
                self.response = getattr(self.handle, self.method).remote(*self.args, **self.kwargs)
        raise AssertionError("unreachable")


@dataclass
class ServeShard:
    handle: Any

    def call(self, method: str, *args: Any, **kwargs: Any) -> ServeCall:
        return ServeCall(self.handle, method, args, kwargs)


def connect(folder: str | Path, settings: Settings, model: dict[str, Any]) -> RoutedIndex:
    """The router's view of the sharded index ``folder`` whose shards are deployed on ``settings.ray_address``."""
    from ray import serve

    manifest = read_manifest(folder)
    if manifest.get("model", {}).get("checksum") != model.get("checksum"):
        raise IndexMismatch(f"the shards in {folder} were embedded with another model; rebuild them")
    connect_ray(settings.ray_address)
    clients = []
    for number in range(len(manifest["shards"])):
        try:
            clients.append(ServeShard(serve.get_app_handle(APP.format(number))))
        except Exception as exc:  # (Serve raises a plain RayServeException for an unknown app)
            raise ShardsUnavailable(
                f"shard {number} is not deployed on {settings.ray_address}: start the service with rag serve --ray"
            ) from exc
    index = RoutedIndex(settings=settings.index_settings(), model=model, clients=clients)  # type: ignore[arg-type]
    index.infos(fresh=True)
    return index
