# twiki — every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

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

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,lm,ray]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/twiki snapshot --month $(SAMPLE_MONTH) --mirror $(SAMPLE_MIRROR) --workers 2
	$(BIN)/python -m pipelines.show_snapshot --month $(SAMPLE_MONTH)
	@echo; echo "== probes of the pair (data/probes/2016-05_2016-06/report.md) =="; \
	  head -n 5 data/probes/2016-05_2016-06/report.md
	@echo; echo "dataset: data/export/$(SAMPLE_MONTH)/ (README.md is its card); report: data/reports/$(SAMPLE_MONTH)/report.md"

snapshot: $(STAMP)
	@test -n "$(MONTH)" || { echo "usage: make snapshot MONTH=YYYY-MM [MIRROR=url-or-folder] [WORKERS=N]"; exit 2; }
	$(BIN)/twiki snapshot --month $(MONTH) $(if $(MIRROR),--mirror $(MIRROR)) --workers $(WORKERS) \
		--executor $(EXECUTOR) $(if $(ADDRESS),--address $(ADDRESS))

bench: $(STAMP)
	$(BIN)/python -m pipelines.bench
	$(BIN)/python -m pipelines.bench_ray

clean:
	rm -rf data/raw data/snapshots data/work data/bench
