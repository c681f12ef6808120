#!/usr/bin/env bash
# The evaluation `make eval` runs: the trust benchmark, the seed gold set and the SQuAD 2.0 validation articles for
# each reader,
# SciFact (BEIR) retrieval once, then the table in eval/results/README.md.
#
#   SHARED=../shared            where data/ lies (squad-v2.0-dev/, scifact/)
#   READERS="trained heuristic" readers to evaluate (SciFact uses /search only, so it runs once)
#   LIMIT=                      a fixed sample of N questions per set, for a quick run (empty: all)
#   CONCURRENCY=4               requests in flight
#   RESULTS=eval/results        where run folders and README.md go; CACHE=eval/.cache for the indexes
#
# Indexes are built under eval/.cache/ (incrementally: an unchanged corpus is not embedded again), never in
# index/, which is the one `make serve` serves.
set -euo pipefail

cd "$(dirname "$0")/.."
RAG=.venv/bin/rag
SHARED=${SHARED:-../shared}
DATA=$SHARED/data
READERS=${READERS:-trained heuristic}
CONCURRENCY=${CONCURRENCY:-4}
CACHE=${CACHE:-eval/.cache}
RESULTS=${RESULTS:-eval/results}

SQUAD=$DATA/squad-v2.0-dev/dev-v2.0.json
SCIFACT=$DATA/scifact
for needed in "$SQUAD" "$SCIFACT/corpus.jsonl" "$SCIFACT/queries.jsonl" "$SCIFACT/qrels/test.tsv"; do
    if [[ ! -e $needed ]]; then
        echo "run_all.sh: $needed is missing (set SHARED=... to the folder holding data/)" >&2
        exit 2
    fi
done

# One /ask per question: the reports' latencies are then per question, comparable across versions (`rag eval`
# batches 16 questions per POST /ask/batch by default, with the same answers, and reports batch round trips).
common=(--concurrency "$CONCURRENCY" --batch-size 1)
if [[ -n ${LIMIT:-} ]]; then
    common+=(--limit "$LIMIT")
fi

for reader in $READERS; do
    echo "== trust benchmark (held-out training articles: answerable, adversarial, near miss, not covered), $reader reader"
    # The same reader outputs rag fit-calibration fitted on (cached under $CACHE/calibration); writes only the report.
    "$RAG" trust --reader "$reader" --squad "$SQUAD" --cache "$CACHE/calibration" --out "$RESULTS/trust-$reader"

    echo "== seed gold (a development set: its questions shaped features), $reader reader"
    "$RAG" eval eval/gold/seed.jsonl --reader "$reader" \
        --index "$CACHE/index-seed" --corpus seeds/ \
        --out "$RESULTS/seed-$reader" "${common[@]}"

    echo "== off-topic questions over the SQuAD + seed corpus, $reader reader"
    "$RAG" eval eval/gold/offtopic.jsonl --reader "$reader" \
        --index "$CACHE/index-squad" --corpus "$SQUAD" --corpus seeds/ \
        --out "$RESULTS/offtopic-$reader" "${common[@]}"

    echo "== SQuAD 2.0 validation articles, $reader reader"
    "$RAG" eval "$SQUAD" --split validation --reader "$reader" \
        --index "$CACHE/index-squad" --corpus "$SQUAD" --corpus seeds/ \
        --out "$RESULTS/squad-validation-$reader" "${common[@]}"
done

echo "== SciFact test queries (retrieval only)"
# /search does not read, so the heuristic reader (no weights needed) keeps start-up short. SciFact runs with the
# retrieval settings tuned on its own train queries (eval/tune_retrieval.py): BM25 k1 0.9, b 0.9, RRF k 30,
# dense weight 1.0 (the defaults were tuned on SQuAD training articles and SciFact train together).
RAG_BM25_K1=0.9 RAG_BM25_B=0.9 RAG_RRF_K=30 RAG_DENSE_WEIGHT=1.0 \
"$RAG" eval "$SCIFACT" --split test --reader heuristic \
    --index "$CACHE/index-scifact" --corpus "$SCIFACT/corpus.jsonl" \
    --out "$RESULTS/scifact-test" "${common[@]}"

echo "== the reader alone, gold paragraph given (torch fp32, ONNX fp32, ONNX int8)"
.venv/bin/python eval/reader_gold.py --shared "$SHARED" ${LIMIT:+--limit "$LIMIT"} --out "$RESULTS/reader-gold.json"

.venv/bin/python -c 'import sys; from rag.evaluation.report import write_results_table as w; print(w(sys.argv[1]))' "$RESULTS"
# The README's result tables, from the files just written.
.venv/bin/python eval/readme_tables.py
