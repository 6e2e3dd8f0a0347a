# courier — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
COURIER := $(VENV)/bin/courier
TOOLS := .tools
AZURITE := $(TOOLS)/node_modules/.bin/azurite-blob
# 3.37 honours List Blobs' startFrom, which delta-rs uses to find a table's later commits
# (older Azurite ignores it and a Delta table there cannot get past its second commit)
AZURITE_VERSION := 3.37.0
AZURITE_STAMP := $(TOOLS)/.azurite-$(AZURITE_VERSION)
STAMP := $(VENV)/.installed

.PHONY: help install install-dev run test test-fast lint format typecheck bench bench-scale bench-listing bench-ingest bench-cbor bench-ui bench-spark clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml setup.py courier/_cbor2json.c
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev,spark,delta]'
	touch $(STAMP)

install: $(STAMP)  ## virtualenv with courier and its dev tools

$(AZURITE_STAMP):
	mkdir -p $(TOOLS)
	cd $(TOOLS) && npm install --silent --no-audit --no-fund --prefix . azurite@$(AZURITE_VERSION) >/dev/null
	touch $@

CHROMIUM := /usr/bin/chromium

$(CHROMIUM):  # the status page's browser tests (playwright cannot download its own browser)
	command -v apt-get >/dev/null && (apt-get install -y -q chromium chromium-driver >/dev/null \
	  || (apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null))

install-dev: install $(AZURITE_STAMP) $(CHROMIUM)  ## also Azurite (npm) and Chromium (apt) for the tests

run: install  ## land a day of example payloads, run the couriers, show the feed tables
	$(PY) -m demo run

test: install-dev  ## the full suite (starts/stops moto server and Azurite itself)
	AZURITE_BIN=$(abspath $(AZURITE)) $(PY) -m pytest -q -p no:cacheprovider
	$(COURIER) --project . validate
	$(COURIER) --project . query test

test-fast: install  ## unit tests only (no servers)
	$(PY) -m pytest -q -m "not integration and not slow"

lint: install  ## ruff + mypy
	$(VENV)/bin/ruff check courier demo tests bench
	$(VENV)/bin/ruff format --check courier demo tests bench
	$(VENV)/bin/mypy

format: install  ## apply ruff formatting and fixes
	$(VENV)/bin/ruff check --fix courier demo tests bench
	$(VENV)/bin/ruff format courier demo tests bench

bench: install  ## benchmarks vs raw DuckDB and dlt (BENCH_MB=1024 for the 1 GB window)
	$(PIP) install -q -e '.[bench]'
	$(PY) -m bench.run
	$(PY) -m bench.delta
	$(PY) -m bench.ingest
	$(PY) -m bench.cbor
	$(PY) -m bench.ui
	$(PY) -m bench.spark

bench-scale: install  ## make bench's contenders at 50 MB, 200 MB and 1 GB, one ratio table (minutes)
	$(PIP) install -q -e '.[bench]'
	$(PY) -m bench.scale

bench-listing: install  ## discovery of one day among 500,000 local / 50,000 S3 objects (minutes)
	$(PY) -m bench.listing

bench-ingest: install  ## ingest API under load (fsync on): payloads/s, p50/p99, landed == 202s
	$(PY) -m bench.ingest

bench-spark: install  ## the window through Sail (Spark Connect): records/s vs courier's DuckDB path (BENCH_MB)
	$(PIP) install -q -e '.[bench]'
	$(PY) -m bench.spark

bench-cbor: install  ## the same records as NDJSON and as CBOR through Context.run (BENCH_MB)
	$(PIP) install -q -e '.[bench]'
	$(PY) -m bench.cbor

bench-ui: install  ## status page with 10,000 runs and 50 couriers: overview and runs under 200 ms
	$(PY) -m bench.ui

clean:  ## remove local state and tools
	rm -rf .courier $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
