# The README's two commands: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test install install-serve system-deps web-map sample-data lint dist

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned to the CPU wheel on disk; a looser requirement pulls a CUDA build
## What serving needs (no dev extra: no browsers' drivers, locust, mlflow, dvc)
install-serve: $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .

## Everything: tests, lint, training tools
install: install-serve
	$(BIN)/pip install --quiet -e '.[dev]'

system-deps:
	scripts/system-deps.sh

web-map:
	scripts/build-web-map.sh

sample-data: install-serve
	$(BIN)/hndsr-tiles sample-data

## Run the server on the embedded default (sample scene, shipped checkpoint, disk cache)
serve: install-serve web-map sample-data
	$(BIN)/hndsr-tiles serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy tileserver sr_engine cache cogs training
	$(BIN)/lint-imports

## The wheel and sdist in dist/, the built web map inside both (decision 0602)
dist: install web-map
	rm -rf dist
	$(BIN)/python -m build

## Install everything the tests need and run the whole suite
test: system-deps install web-map lint
	$(BIN)/python -m pytest
