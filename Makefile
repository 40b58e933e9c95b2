# The README's two commands: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: serve test install system-deps web-map sample-data lint

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first, pinned to the CPU wheel on disk; a looser requirement pulls a CUDA build
install: $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'

system-deps:
	scripts/system-deps.sh

web-map: install
	scripts/build-web-map.sh

sample-data: install
	$(BIN)/hndsr-tiles sample-data

## Run the server on the embedded default (sample scene, shipped checkpoint, disk cache)
serve: install web-map sample-data
	$(BIN)/hndsr-tiles serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy tileserver sr_engine cache cogs training
	$(BIN)/lint-imports

## Install everything the tests need and run the whole suite
test: system-deps install web-map lint
	$(BIN)/python -m pytest
