"""The benchmark's tables in the README (targets, latency, throughput, Haystack, quality, the write path),
written from eval/results/bench.json and the write-path results. eval/readme_tables.py puts them in place."""

from __future__ import annotations

import json
from pathlib import Path

from readme_format import ms, table


def bench_targets_table(results: Path) -> str:
    targets = json.loads((results / "bench.json").read_text())["targets"]
    rows = [[t["name"], t["goal"], t["measured"], "yes" if t["ok"] else "**no**"] for t in targets]
    return table(["target", "goal", "measured", "met"], rows)


def _bench(results: Path) -> dict:
    return json.loads((results / "bench.json").read_text())


def bench_latency_table(results: Path) -> str:
    """Query latency per endpoint and place (in-process, over HTTP), against the floor."""
    rows = []
    for x in _bench(results)["latency"]:
        if x["where"] not in ("in-process", "http"):
            continue  # the torch rows belong to the Haystack comparison
        floor = x.get("floor") or {}
        stages = ", ".join(f"{k} {v:.1f}" for k, v in (x.get("stages") or {}).items() if k != "total")
        rows.append(
            [
                x["endpoint"],
                x["where"],
                ms(x["latency"]["p50"]),
                ms(x["latency"]["p95"]),
                ms(floor.get("p50")),
                f"{x['floor_ratio']:.2f}x" if x.get("floor_ratio") else "–",
                stages,
            ]
        )
    return table(["endpoint", "where", "p50", "p95", "floor p50", "p50 / floor", "stages p50 (service)"], rows, 2)


def bench_throughput_table(results: Path) -> str:
    """Requests a second over HTTP per endpoint and concurrency, with errors; the server's start-up and memory."""
    r = _bench(results)
    rows = [
        [x["endpoint"], str(x["concurrency"]), f"{x['rps']:.1f}", ms(x["p50"]), ms(x["p95"]), str(x["errors"])]
        for x in r["throughput"]
    ]
    server = r.get("server") or {}
    rows.append(
        [
            "(server)",
            "",
            f"ready in {server.get('startup_s', float('nan')):.1f} s",
            f"RSS ready {ms(server.get('rss_ready_mib'), 0)} MiB",
            f"peak {ms(server.get('rss_peak_mib'), 0)} MiB",
            "",
        ]
    )
    return table(["endpoint", "concurrency", "requests/s", "p50 ms", "p95 ms", "errors"], rows)


def bench_haystack_table(results: Path) -> str:
    """Speed against Haystack in two columns (same runtime, as deployed)."""
    r = _bench(results)
    peer = r.get("peer") or {}
    same, default = peer.get("same_runtime") or {}, peer.get("default") or {}
    lat = {(x["endpoint"], x["where"]): x["latency"] for x in r["latency"]}

    def ratio(v: float | None) -> str:
        return "" if v is None else f"{v:.2f}x"

    rows = []
    for endpoint, key in (("/search", "search"), ("/ask", "ask")):
        ours_same, ours_default = lat.get((endpoint, "in-process, torch fp32")), lat.get((endpoint, "in-process"))
        rows.append(
            [
                f"{endpoint} p50 ms",
                ms(ours_same and ours_same["p50"]),
                ms((same.get(key) or {}).get("p50")),
                ratio(r.get(f"haystack_same_runtime_{key}_speedup")),
                ms(ours_default and ours_default["p50"]),
                ms((default.get(key) or {}).get("p50")),
                ratio(r.get(f"haystack_default_{key}_speedup")),
            ]
        )
    squad = next((i for i in r.get("ingest") or [] if i["corpus"] == r.get("serve_corpus", "squad")), None)
    rows.append(
        [
            f"ingest s ({r.get('serve_corpus', 'squad')})",
            ms((r.get("ours_same_runtime") or {}).get("ingest_seconds")),
            ms(same.get("ingest_seconds")),
            "",
            ms(squad and squad["seconds"]),
            ms(default.get("ingest_seconds")),
            ratio(r.get("haystack_ingest_speedup")),
        ]
    )
    rows.append(
        [
            "peak RSS MiB (not like for like: ours serves a built index, Haystack's process also embedded the corpus)",
            "",
            "",
            "",
            ms((r.get("server") or {}).get("rss_peak_mib"), 0),
            ms(default.get("rss_peak_mib"), 0),
            "no ratio",
        ]
    )
    header = ["figure", "same runtime: ours", "Haystack", "Haystack / ours", "as deployed: ours", "Haystack"]
    return table([*header, "Haystack / ours"], rows)


def bench_quality_table(results: Path) -> str:
    """Retrieval and answer quality of both systems on the benchmark's questions, and the paired differences."""
    r = _bench(results)
    columns = {"same_runtime": "same runtime", "default": "as deployed"}

    def iv(x: dict | None, scale: float, digits: int, signed: bool = False) -> str:
        if not x:
            return ""
        sign = "+" if signed else ""
        v, lo, hi = (x[k] * scale for k in ("value", "lo", "hi"))
        text = f"{v:{sign}.{digits}f} [{lo:{sign}.{digits}f}, {hi:{sign}.{digits}f}]"
        return f"**{text}**" if signed and lo > 0 else text

    rows = []
    for column in columns:
        for q in (q for q in r.get("quality") or [] if q.get("column") == column):
            ans = q.get("f1_answerable")
            rows.append(
                [
                    columns[column],
                    q["system"],
                    iv(q["recall_at_5"], 1, 3),
                    iv(q["f1_squad2"], 100, 1),
                    iv(ans, 100, 1),
                ]
            )
        diffs = {
            d["metric"]: d["ours_minus_haystack"] for d in r.get("quality_differences") or [] if d["column"] == column
        }
        if diffs:
            rows.append(
                [
                    columns[column],
                    "ours - Haystack",
                    iv(diffs.get("recall_at_5"), 1, 3, True),
                    iv(diffs.get("f1_squad2"), 100, 1, True),
                    iv(diffs.get("f1_answerable"), 100, 1, True),
                ]
            )
    n = max((q.get("f1_answerable") or {}).get("n", 0) for q in r.get("quality") or [{}])
    return table(["column", "system", "recall@5", "SQuAD 2.0 F1", f"answerable F1 ({n})"], rows, 2)


def bench_writes_table(results: Path) -> str:
    """The index's write path (writes.json: synthetic), a search under writes over HTTP, and two writers."""
    sizes = json.loads((results / "writes.json").read_text())
    under = json.loads((results / "search_under_writes.json").read_text())
    two = json.loads((results / "two_writers.json").read_text())
    largest = sizes[-1]

    def per_size(key: str) -> str:
        return " / ".join(f"{w[key + '_p50_ms']:.1f} ({w[key + '_max_ms']:.1f})" for w in sizes) + " ms"

    def yes(ok: bool) -> str:
        return "yes" if ok else "**no**"

    counts = " / ".join(f"{w['chunks']:,}" for w in sizes)
    adds_ok = all(w["add_p50_ms"] <= 50 for w in sizes)
    total = 2 * two["documents_per_writer"]
    listed = two.get("documents_listed_by_workers") or []
    rows = [
        [
            f"add one 10-chunk document, excluding embedding: p50 (max) at {counts} chunks",
            per_size("add"),
            "p50 <= 50 ms",
            yes(adds_ok),
        ],
        ["replace one document of the large segment: p50 (max), same sizes", per_size("replace"), "", ""],
        ["delete one document of the large segment: p50 (max), same sizes", per_size("delete"), "", ""],
        [
            "search p50 before / after 10 deletes (tombstones), same sizes",
            ", ".join(
                f"{w['search_p50_before_deletes_ms']:.2f} / {w['search_p50_after_deletes_ms']:.2f}" for w in sizes
            )
            + " ms",
            "",
            "",
        ],
        [
            f"a background merge of 10 small segments, at {largest['chunks']:,}",
            f"{largest['merge_max_ms']:.0f} ms",
            "",
            "",
        ],
        [
            f"load a {largest['chunks']:,}-chunk index in a new process (start to loaded)",
            f"{largest['load_s']:.1f} s",
            "<= 10 s",
            yes(largest["load_s"] <= 10),
        ],
        [
            f"`/search` p99 over HTTP while a client adds a document every second, against idle ({under['index']}, "
            f"{under['chunks']:,} chunks, 1 worker)",
            f"{under['writing']['p99_ms']:.1f} against {under['idle']['p99_ms']:.1f} ms: {under['p99_ratio']:.2f}x",
            "<= 1.5x",
            yes(under["p99_ratio"] <= 1.5),
        ],
        [
            "the same in-process, the writer a thread of the searching process (synthetic, same sizes)",
            " / ".join(f"{w['p99_ratio']:.2f}x" for w in sizes),
            "",
            "",
        ],
        [
            f"`rag serve --workers 2` taking {two['documents_per_writer']} one-document POSTs while `rag ingest` adds "
            f"{two['documents_per_writer']} files",
            f"{two['present']:,} of {total:,} present, {two['missing']} missing; the workers list "
            + " and ".join(f"{n:,}" for n in listed),
            "all present",
            yes(two["present"] == total and two["missing"] == 0),
        ],
    ]
    return table(["figure", "measured", "target", "met"], rows)
