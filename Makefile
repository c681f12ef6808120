# Everything starts from a fresh machine: the first target that needs the environment creates it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INDEX ?= index
SHARED ?= ../shared

LOCK := requirements.lock
# torch's CUDA dependencies on PyPI's Linux wheel (the rest of nvidia-* comes through them). The CPU build of
# torch that pip installs from this disk requires none of them, so the lock leaves them out.
LOCK_EXCLUDES := triton cuda-bindings cuda-toolkit nvidia-cudnn-cu13 nvidia-cusparselt-cu13 nvidia-nccl-cu13 \
	nvidia-nvshmem-cu13

.PHONY: install lock serve test index eval eval-quick bench bench-quick bench-scale bench-ray bench-writes loadtest fuzz clean-index

# Installs exactly the locked set, with pip (uv does not look for the torch build on this disk).
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch lies on this disk; install it first so nothing pulls a CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	# A dependency added to pyproject.toml but not yet to the lock (`make lock`) fails here.
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP)

# Re-resolve pyproject.toml (extras dev and ray) for the venv's interpreter and platform; pins already in the
# lock are kept where they still fit (LOCKFLAGS=--upgrade moves everything to the newest allowed).
lock: | $(STAMP)
	printf '%s\n' $(LOCK_EXCLUDES) | $(BIN)/uv pip compile -q pyproject.toml --extra dev --extra ray \
		--python $(BIN)/python --excludes /dev/stdin --custom-compile-command 'make lock' $(LOCKFLAGS) -o $(LOCK)
	! grep -nE '^(nvidia-|triton|cuda-)' $(LOCK)

$(INDEX)/CURRENT: | $(STAMP)
	$(BIN)/rag ingest seeds/ --index $(INDEX)

index: $(INDEX)/CURRENT

# The ONNX files are made once per machine (`rag export`), so the serving process never imports torch.
# `make serve PORT=8765` (or HOST=0.0.0.0) overrides RAG_PORT / RAG_HOST.
serve: install index
	$(BIN)/rag export
	$(BIN)/rag serve --index $(INDEX) $(if $(PORT),--port $(PORT)) $(if $(HOST),--host $(HOST))

# deptry first: an import that pyproject.toml does not declare fails here, not on a fresh machine; mypy: the types.
test: install
	$(BIN)/deptry .
	$(BIN)/mypy rag service
	$(BIN)/python -m pytest

# Seed gold set, SQuAD 2.0 validation (35 articles + seed) and SciFact test, for both readers.
eval: install
	SHARED=$(SHARED) eval/run_all.sh

eval-quick: install
	SHARED=$(SHARED) LIMIT=200 eval/run_all.sh

# Speed against the model passes' own cost (the floor) and against Haystack 2.x; --scale: 1M/10M vectors.
bench: install
	$(BIN)/python eval/bench.py --shared $(SHARED)
	$(MAKE) bench-writes

# The index's write path (synthetic documents and vectors at 10k/100k/1M chunks) and two writers at once.
bench-writes: install
	$(BIN)/python eval/benchmark/writes.py --out eval/results
	$(BIN)/python eval/search_under_writes.py --out eval/results
	$(BIN)/python eval/two_writers.py --out eval/results

bench-quick: install
	$(BIN)/python eval/bench.py --quick --shared $(SHARED)

bench-scale: install
	$(BIN)/python eval/bench.py --scale

# Ingest on Ray (1 and 2 workers) against the local path, and sharded against unsharded search; not in `make bench`.
bench-ray: install
	$(BIN)/python eval/benchmark/ray_bench.py --shared $(SHARED)

# Thousands of requests at concurrency 8/32/64 and an overload level, against uvicorn on 127.0.0.1.
loadtest: install
	$(BIN)/python eval/loadtest.py

# Schemathesis against the service's own OpenAPI schema, many cases, a real server.
fuzz: install
	$(BIN)/python eval/fuzz.py

clean-index:
	rm -rf $(INDEX)/CURRENT $(INDEX)/gen-* $(INDEX)/.tmp-*
