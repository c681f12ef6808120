"""`make bench-ray-serve`: the sharded index served on Ray Serve, checked as a cluster (issue 27).

A local Ray cluster of several processes (a head and ``--nodes`` worker nodes, each its own raylet, on this
machine; ``ray.cluster_utils.Cluster``), the shards deployed on it by ``rag serve --ray`` (a subprocess, as a
user starts it), and beside it ``rag serve`` on the same sharded folder in one process. Then:

1. **agreement**: the same questions to both over HTTP; a question agrees when the two ``/ask`` bodies are equal
   but for their timings (answers, spans, offsets, scores, citations, passages, decision);
2. **a replica killed under load**: ``--clients`` threads ask the routed service without pause; one replica of
   shard 0 is killed (``ray.kill``); the 5xx answers are counted against the requests in flight at the kill,
   and the seconds until Serve runs the full replica count again;
3. **write visibility**: a document written through the routed service (``POST /documents``); the status of
   the router's first read of it right after the acknowledgement (it reads its own writes), and the seconds
   until every replica of its shard serves the new commit (each replica's ``info``).

    python eval/ray_serve_check.py                  (10 SQuAD train articles + the seed; eval/results/ray-serve.json)
    python eval/ray_serve_check.py --articles 0     (the seed alone: what tests/test_ray_serve.py runs)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from rag.evaluation.server import Server, serve

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SQUAD_TRAIN = SHARED / "data" / "squad-v2.0-train-part" / "train-v2.0-first10.json"
KEY = "ray-serve-check"


def _corpus(articles: int, questions: int) -> tuple[list[Any], list[str]]:
    """The seed article and the first ``articles`` SQuAD training articles; the seed's gold and off-topic
    questions and every ``n``-th SQuAD question of those articles, ``questions`` in all at most."""
    from rag.loaders import load_paths, slug_id
    from rag.squad import article_text, iter_questions, load_squad
    from rag.types import Document

    docs = list(load_paths([ROOT / "seeds"]).documents)
    asked = [
        json.loads(line)["question"]
        for name in ("seed", "offtopic")
        for line in _lines(ROOT / "eval" / "gold" / f"{name}.jsonl")
    ]
    if articles:
        chosen = load_squad(SQUAD_TRAIN)["data"][:articles]
        docs += [
            Document(id=slug_id(a["title"]), title=a["title"].replace("_", " "), text=article_text(a)[0])
            for a in chosen
        ]
        squad = [q.question for q in iter_questions(chosen)]
        step = max(1, len(squad) // max(1, questions - len(asked)))
        asked += squad[::step]
    return docs, asked[:questions]


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build(folder: Path, docs: list[Any], shards: int) -> dict[str, int]:
    from rag.engine import Engine
    from rag.settings import Settings
    from rag.shards import split_index

    whole = folder.parent / (folder.name + "-whole")
    shutil.rmtree(whole, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
    engine = Engine.open(Settings(_env_file=None, index_dir=whole), create=True, read=False)  # type: ignore[call-arg]
    engine.upsert(docs)
    manifest = split_index(engine.snapshot, shards, folder)
    return {"documents": manifest["counts"]["documents"], "chunks": manifest["counts"]["chunks"]}


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("timings_ms", "request_id")}


def agreement(one: str, routed: str, questions: list[str]) -> dict[str, Any]:
    """Each question to both services, ``/ask`` and ``/search`` (interleaved, so both see the same machine load)."""
    same, differ = 0, []
    times: dict[str, list[float]] = {"ask_one": [], "ask_routed": [], "search_one": [], "search_routed": []}

    def timed(name: str, call: Any, *args: Any, **kwargs: Any) -> httpx.Response:
        started = time.perf_counter()
        reply = call(*args, **kwargs)
        times[name].append((time.perf_counter() - started) * 1000)
        return reply

    with httpx.Client(timeout=120) as client:
        for question in questions:
            a = timed("ask_one", client.post, one + "/ask", json={"question": question})
            b = timed("ask_routed", client.post, routed + "/ask", json={"question": question})
            if a.status_code == b.status_code == 200 and _comparable(a.json()) == _comparable(b.json()):
                same += 1
            else:
                differ.append({"question": question, "status": [a.status_code, b.status_code]})
            for name, url in (("search_one", one), ("search_routed", routed)):
                timed(name, client.get, url + "/search", params={"q": question, "k": 10})
    p50 = {f"{name}_p50_ms": round(statistics.median(values), 1) for name, values in times.items() if values}
    return {
        "questions": len(questions),
        "agree": same,
        "agreement": round(same / max(1, len(questions)), 4),
        "differing": differ[:10],
        **p50,
    }


def _replicas(app: str) -> list[Any]:
    from ray.util.state import list_actors

    return [
        a
        for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
        if a.class_name.startswith("ServeReplica:") and f":{app}:" in a.class_name + ":"
    ]


def memory(one: Server, routed: Server, shards: int) -> dict[str, Any]:
    """Resident memory (MiB) of the one-process service, the router, and each shard replica (all on this machine)."""
    from rag.distributed.serving import APP

    replicas = {
        APP.format(n): [round(Server("", a.pid, None, 0).memory_mib("VmRSS"), 1) for a in _replicas(APP.format(n))]
        for n in range(shards)
    }
    return {
        "one_process_mib": round(one.memory_mib("VmRSS"), 1),
        "router_mib": round(routed.memory_mib("VmRSS"), 1),
        "replicas_mib": replicas,
    }


def kill_under_load(url: str, questions: list[str], clients: int, replicas: int, seconds: float) -> dict[str, Any]:
    import ray

    from rag.distributed.serving import APP

    statuses: Counter[str] = Counter()
    in_flight = 0
    lock = threading.Lock()
    stop = threading.Event()

    def ask(worker: int) -> None:
        nonlocal in_flight
        with httpx.Client(timeout=120) as client:
            i = worker
            while not stop.is_set():
                with lock:
                    in_flight += 1
                try:
                    status = str(
                        client.post(url + "/ask", json={"question": questions[i % len(questions)]}).status_code
                    )
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with lock:
                    in_flight -= 1
                    statuses[status] += 1
                i += clients

    threads = [threading.Thread(target=ask, args=(w,), daemon=True) for w in range(clients)]
    for t in threads:
        t.start()
    time.sleep(seconds / 3)
    app = APP.format(0)
    victims = _replicas(app)
    if not victims:
        raise RuntimeError(f"no replica of {app} found among the cluster's actors")
    with lock:
        flight_at_kill, before = in_flight, sum(statuses.values())
    ray.kill(ray.get_actor(victims[0].name, namespace=victims[0].ray_namespace), no_restart=True)
    killed = time.monotonic()
    restored = None
    while time.monotonic() - killed < max(seconds, 120):
        alive = [a for a in _replicas(app) if a.actor_id != victims[0].actor_id]
        if len(alive) >= replicas:
            restored = time.monotonic() - killed
            break
        time.sleep(0.5)
    time.sleep(seconds / 3)
    stop.set()
    for t in threads:
        t.join(150)
    errors = sum(n for s, n in statuses.items() if not s.startswith("2"))
    return {
        "clients": clients,
        "requests": sum(statuses.values()),
        "requests_before_kill": before,
        "statuses": dict(statuses),
        "in_flight_at_kill": flight_at_kill,
        "errors": errors,
        "errors_5xx": sum(n for s, n in statuses.items() if s.startswith("5")),
        "replica_replaced_s": None if restored is None else round(restored, 1),
        "within_in_flight": errors <= flight_at_kill,
    }


def write_visibility(url: str, replicas: int, count: int, timeout: float = 60) -> dict[str, Any]:
    from ray import serve

    from rag.distributed.serving import APP
    from rag.shards import shard_of

    doc_id = f"ray-check-{int(time.time())}"
    owner = shard_of(doc_id, count)
    handle = serve.get_app_handle(APP.format(owner))
    before = max(handle.info.remote().result().generation for _ in range(4 * replicas))
    body = {
        "documents": [
            {"id": doc_id, "title": "Lighthouse", "text": "The lighthouse keeper retired in June after forty years."}
        ]
    }
    started = time.monotonic()
    reply = httpx.post(url + "/documents", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
    reply.raise_for_status()
    acked = time.monotonic()
    # The router first (it reads its own writes: the first read must find it), then each replica of the shard.
    first_read = httpx.get(f"{url}/documents/{doc_id}", timeout=30).status_code
    routed = None
    while time.monotonic() - acked < timeout:
        if httpx.get(f"{url}/documents/{doc_id}", timeout=30).status_code == 200:
            routed = time.monotonic() - acked
            break
        time.sleep(0.05)
    seen: dict[str, int] = {}
    everywhere = None
    while time.monotonic() - acked < timeout:
        info = handle.info.remote().result()
        seen[info.replica] = info.generation
        if len(seen) >= replicas and all(g > before for g in seen.values()):
            everywhere = time.monotonic() - acked
            break
        time.sleep(0.05)
    return {
        "document": doc_id,
        "shard": owner,
        "write_s": round(acked - started, 2),
        "router_first_read_status": first_read,
        "replicas_seen": len(seen),
        "visible_on_every_replica_s": None if everywhere is None else round(everywhere, 2),
        "visible_through_router_s": None if routed is None else round(routed, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--articles", type=int, default=10, help="SQuAD training articles beside the seed (0: the seed alone)"
    )
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=2, help="worker nodes beside the head")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--load-seconds", type=float, default=30)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "ray-serve.json")
    args = parser.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="ray-serve-check-"))
    work.mkdir(parents=True, exist_ok=True)
    docs, questions = _corpus(args.articles, args.questions)
    t0 = time.perf_counter()
    folder = work / "sharded"
    sizes = build(folder, docs, args.shards)
    print(f"built {sizes} in {time.perf_counter() - t0:.0f} s", flush=True)
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(args.nodes):
        cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)  # (the replicas' request logs stay in Ray's files)
    routed_options = ["--ray", cluster.address, "--replicas", str(args.replicas)]
    env = {"RAG_API_KEY": KEY, "RAG_THREADS": "1"}
    try:
        with (
            serve(folder, work / "one.log", env=env, cwd=ROOT) as one,
            serve(folder, work / "routed.log", env=env, cwd=ROOT, ready_s=600, extra=routed_options) as routed,
        ):
            ready = {"one_process_s": round(one.startup_s, 1), "routed_s": round(routed.startup_s, 1)}
            print(f"ready {ready}", flush=True)
            agree = agreement(one.url, routed.url, questions)
            rss = memory(one, routed, args.shards)
            print(f"agreement {agree['agreement']} ({agree['agree']}/{agree['questions']})", flush=True)
            killed = kill_under_load(routed.url, questions, args.clients, args.replicas, args.load_seconds)
            print(f"kill {killed}", flush=True)
            visible = write_visibility(routed.url, args.replicas, args.shards)
            print(f"write {visible}", flush=True)
    finally:
        ray.shutdown()  # (the driver leaves before the head it is connected to is removed)
        cluster.shutdown()
    result = {
        "agreement": agree["agreement"],
        "corpus": {"seed": 1, "squad_train_articles": args.articles, **sizes},
        "cluster": {"head": 1, "worker_nodes": args.nodes, "shards": args.shards, "replicas_per_shard": args.replicas},
        "startup": ready,
        "agreement_detail": agree,
        "memory_after_agreement": rss,
        "replica_killed_under_load": killed,
        "write_visibility": visible,
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
