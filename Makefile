# Everything starts from a fresh machine: the first target that needs the environment creates it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INDEX ?= index
SHARED ?= ../shared

.PHONY: install serve test index eval eval-quick bench bench-quick bench-scale bench-ray loadtest fuzz clean-index

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch lies on this disk; install it first so nothing pulls a CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	touch $(STAMP)

install: $(STAMP)

$(INDEX)/CURRENT: | $(STAMP)
	$(BIN)/rag ingest seeds/ --index $(INDEX)

index: $(INDEX)/CURRENT

serve: install index
	$(BIN)/rag serve --index $(INDEX)

test: install
	$(BIN)/python -m pytest

# Seed gold set, SQuAD 2.0 validation (35 articles + seed) and SciFact test, for both readers.
eval: install
	SHARED=$(SHARED) eval/run_all.sh

eval-quick: install
	SHARED=$(SHARED) LIMIT=200 eval/run_all.sh

# Speed against the model passes' own cost (the floor) and against Haystack 2.x; --scale: 1M/10M vectors.
bench: install
	$(BIN)/python eval/bench.py --shared $(SHARED)

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
