"""bench.md's tables in order: the machine and versions first, then each section present in the results (a
section a run did not measure is left out), the dense index at scale, and the run's notes last."""

from __future__ import annotations

from benchmark.report import service
from benchmark.report.format import Table, mib, num
from benchmark.report.peer import peer_columns, peer_table, quality_table
from benchmark.report.targets import targets_table


def header(r: dict) -> Table:
    """The machine, the versions (ours and the peer's) and the service's settings the run measured with."""
    env = r["environment"]
    v = env["versions"]
    t = Table("Machine and versions", ["", ""])
    rows = [
        ("date", env["date"]),
        ("commit", env.get("commit", "unknown")),
        ("mode", env["mode"]),
        ("cores", f"{env['cores']} ({env['cores_usable']} usable by this process)"),
        ("CPU", env["cpu_model"]),
        ("memory", f"{env['memory_gib']:.1f} GiB"),
        ("load average at start", " ".join(f"{x:.2f}" for x in env["load_average"])),
        ("python", v.get("python", "?")),
        ("torch / onnxruntime / faiss", f"{v.get('torch')} / {v.get('onnxruntime')} / {v.get('faiss-cpu')}"),
        ("sentence-transformers / transformers", f"{v.get('sentence-transformers')} / {v.get('transformers')}"),
        (
            "numpy / bm25s / fastapi / uvicorn",
            f"{v.get('numpy')} / {v.get('bm25s')} / {v.get('fastapi')} / {v.get('uvicorn')}",
        ),
    ]
    peer = next((p for p in peer_columns(r).values() if p.get("versions")), {})
    if peer:
        pv = peer["versions"]
        rows.append(
            (
                "peer (own venv)",
                f"haystack-ai {pv.get('haystack-ai')}, torch {pv.get('torch')}, "
                f"sentence-transformers {pv.get('sentence-transformers')}",
            )
        )
    s = env["settings"]
    rows.append(("service settings", ", ".join(f"{k} {val}" for k, val in s.items())))
    t.rows = [list(row) for row in rows]
    return t


def tables(r: dict) -> list[Table]:
    """Every table of bench.md, in its order; the terminal prints the same ones."""
    out = [header(r)]
    if r.get("targets"):
        out.append(targets_table(r["targets"]))
    if r.get("ingest"):
        out.append(service.ingest_table(r))
    if r.get("latency"):
        out.append(service.latency_table(r))
    if r.get("throughput"):
        out.append(service.throughput_table(r))
    if r.get("server"):
        out.append(service.server_table(r))
    if r.get("filtered"):
        out.append(service.filtered_table(r["filtered"]))
    if r.get("batch"):
        out.append(service.batch_table(r["batch"]))
    if r.get("cache"):
        out.append(service.cache_table(r))
    if r.get("quality"):
        out.append(quality_table(r))
    if r.get("peer"):
        out.append(peer_table(r))
    if r.get("embed_backends"):
        out.append(service.embed_backends_table(r))
    if r.get("reader_backends") is not None:
        out.append(service.reader_backends_table(r))
    if r.get("scale"):
        out.append(scale_table(r["scale"]))
    notes = list(r.get("notes") or [])
    if r.get("section_seconds"):
        parts = ", ".join(f"{k} {v:.0f} s" for k, v in r["section_seconds"].items())
        notes.append(f"Run time: {r.get('total_seconds', 0):.0f} s in all ({parts}).")
    if notes:
        out.append(Table("Notes", [], notes=notes))
    return out


def scale_table(scale: dict) -> Table:
    t = Table(
        f"Dense index at scale (synthetic, dim 384; {scale.get('date', '')})",
        ["vectors", "kind", "params", "build s", "index size", "p50 ms", "p95 ms", "recall@10"],
    )
    for p in scale["best"]:
        params = ", ".join(f"{k} {v}" for k, v in p["params"].items())
        t.rows.append(
            [
                f"{p['vectors']:,}",
                p["kind"],
                params or p.get("note", ""),
                num(p["build_s"], 1),
                mib(p["index_bytes"]),
                num(p["p50_ms"], 2),
                num(p["p95_ms"], 2),
                num(p["recall_at_10"], 3),
            ]
        )
    t.notes.append(
        "Per kind, the smallest nprobe / efSearch that reaches recall@10 >= 0.95 (else the best reached); the whole"
        " sweep is in bench.json."
    )
    t.notes += scale.get("notes", [])
    return t


def markdown(r: dict) -> str:
    intro = [
        "# Benchmark",
        "",
        "Written by `make bench` (`eval/bench.py`); `bench.json` beside this file holds every figure. Latencies in ms;",
        "each figure is the median of several runs; every ratio compares figures measured in the same run.",
        "",
    ]
    return "\n".join(intro) + "\n" + "\n".join(t.markdown() for t in tables(r))
