"""`make bench-ray`'s report: ray-bench.md written from the figures of ray-bench.json (also alone, with
``--report-only``)."""

from __future__ import annotations

import platform
from typing import Any

from ray_ingest import CPUS


def fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def report_md(res: dict[str, Any]) -> str:
    ing = res["ingest"]
    loc = ing["local"]["median"]
    lines = [
        "# Ray ingest and sharded search",
        "",
        "Written by `make bench-ray` (`eval/benchmark/ray_bench.py`); `ray-bench.json` beside this file holds every "
        "run. Medians over runs; every ratio compares figures from the same invocation.",
        "",
        f"- date {res['date']}, {res['cpus']} cores ({platform.processor() or platform.machine()}), "
        f"load average at start {res['load_average']}, Ray {res['ray_version']}, embedding backend "
        f"{res['backend']}; commands ran under `nice -n 19` beside other work, so absolute times are pessimistic",
        f"- corpus: {res['corpus']}",
        "",
        "## Ingest, files to saved index",
        "",
        "Each run is a fresh process, as `rag ingest` is: 'process s' from the outside (interpreter start, imports, "
        "model load included), 'inside s' from the ingest call's start. 'vs local' is local process s / this path's.",
        "",
        "| path | runs | process s | chunks/s | vs local | inside s | Ray start s | read+parse s "
        "| chunk+embed s (wall) | write s | actor compute s | model load s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| local (one process, 2 threads) | {len(ing['local']['runs'])} | {fmt(loc['process'])} | "
        f"{fmt(loc['chunks'] / loc['process'])} | 1.00x | {fmt(loc['total'])} | – | – | – | – | – | "
        f"{fmt(loc['model_load'])} |",
    ]
    for w in res["workers"]:
        r = ing[f"ray-{w}"]["median"]
        lines.append(
            f"| Ray, {w} worker{'s' if w > 1 else ''} ({CPUS // w} thread{'s' if CPUS // w > 1 else ''} each) | "
            f"{len(ing[f'ray-{w}']['runs'])} | {fmt(r['process'])} | {fmt(r['chunks'] / r['process'])} | "
            f"{loc['process'] / r['process']:.2f}x | {fmt(r['total'])} | {fmt(r['ray_init'])} | {fmt(r['load'])} | "
            f"{fmt(r['pipeline'])} | "
            f"{fmt(r['assemble'])} | {fmt(r['actor_compute'])} | {fmt(r['actor_model_load'])} |"
        )
    lines += ["", "Ray's own overhead (same corpus):", ""]
    for w in res["workers"]:
        r, null = ing[f"ray-{w}"]["median"], res["null"][f"ray-{w}"]
        lines.append(
            f"- {w} worker(s): start-up {fmt(r['ray_init'])} s; reading the files as Ray tasks {fmt(r['load'])} s; "
            f"moving documents to the actors and results back and staging them with no model (a null actor, "
            f"same payload sizes) {fmt(null['pipeline'])} s; the actors' own chunk+embed, summed over the actors, "
            f"{fmt(r['actor_compute'])} s within {fmt(r['pipeline'])} s of wall time (model load "
            f"{fmt(r['actor_model_load'])} s per actor, inside that wall)"
        )
    agree = res["agreement"]
    lines += [
        "",
        f"- Ray vs local index: same chunk keys/ids/offsets: {agree['same_chunks']}; embedding cosine min "
        f"{agree['cosine_min']:.5f}, mean {agree['cosine_mean']:.5f} (int8 ONNX quantises activations per batch, "
        "so batch composition moves vectors slightly; with `onnx` fp32 the test shows equality to 1e-5)",
        "",
        f"## Sharded vs unsharded search ({res['search']['questions']} answerable SQuAD questions of the corpus, "
        f"{res['search']['chunks']} chunks, retrieve() in-process, FAISS single-threaded)",
        "",
        "| index | retrieval | p50 ms | p95 ms | top-10 agreement with unsharded | same top 1 | gold recall@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in res["search"]["variants"].items():
        for fname, m in row.items():
            lines.append(
                f"| {name} | {fname} | {m['p50_ms']:.2f} | {m['p95_ms']:.2f} | {m['top10_agreement']:.3f} | "
                f"{m['top1_same']:.3f} | {m['gold_recall_at_10']:.3f} |"
            )
    ds = res["dense_scale"]
    lines += [
        "",
        "- BM25: shards are scored with the whole index's statistics (document frequencies and average length "
        "summed over the shards at query time). 'per-shard IDF' rows merge raw per-shard scores, for comparison.",
        "",
        f"## Dense only, {ds['vectors']:,} synthetic vectors (flat, one thread, {ds['queries']} queries)",
        "",
        "| index | p50 ms | top-10 agreement |",
        "|---|---|---|",
    ]
    for name, ms in ds["ms_p50"].items():
        lines.append(f"| {name} | {ms:.2f} | {ds['top10_agreement'].get(name, 1.0):.3f} |")
    lines += [
        "",
        "- Shards searched one after another in one process: the same vectors scanned plus a merge. Shards on "
        "separate cores or machines would divide the scan time (not measured here: 2 cores, both busy).",
        "",
        f"## Memory and disk per chunk ({res['memory']['chunks']:,} chunks, "
        f"{res['memory']['chunks_per_document']:.1f} per article, "
        f"{res['memory']['document_chars_per_chunk']:.0f} characters of article text per chunk; flat FAISS)",
        "",
        f"- resident memory added by loading the index, per chunk: unsharded "
        f"{res['memory']['rss_per_chunk_unsharded']:,.0f} bytes, sharded ({res['shards'][-1]} shards) "
        f"{res['memory']['rss_per_chunk_sharded']:,.0f} bytes (RSS before and after loading a second copy; the "
        "sharded load frees its float32 vectors after loading, which RSS need not show: the allocator may keep "
        "the pages)",
        "- on disk, per chunk: "
        + ", ".join(f"{k} {v:,.0f} B" for k, v in res["memory"]["disk_bytes_per_chunk"].items()),
        "",
        f"## FAISS bytes per vector ({res['index_bytes']['vectors']:,} synthetic vectors, serialised, ids included)",
        "",
        "| kind | bytes per vector | build s (2 threads) |",
        "|---|---|---|",
        *[
            f"| {kind} | {m['bytes_per_vector']:.1f} | {m['build_s']:.1f} |"
            for kind, m in res["index_bytes"]["kinds"].items()
        ],
        "",
        f"Run time {res['seconds']:.0f} s.",
        "",
    ]
    return "\n".join(lines)
