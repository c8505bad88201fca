# Every target sets itself up from nothing: a .venv, the pinned CPU torch first
# (a looser requirement would pull a multi-GB CUDA build), then the package.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: test test-slow lint bench demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.dev: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.bench: $(VENV)/.dev
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

test: $(VENV)/.dev
	$(BIN)/python -m pytest -m "not slow" src tests

test-slow: $(VENV)/.dev
	$(BIN)/python -m pytest -m slow tests

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

bench: $(VENV)/.bench
	$(BIN)/python benchmarks/sampling_speed.py
	$(BIN)/python benchmarks/evaluation_speed.py
	$(BIN)/python benchmarks/memory_speed.py

$(VENV)/.demo: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[data,efficientnet,serve]'
	touch $@

# The main job: prepare emoji, train (configs/demo.yaml), evaluate on the unseen
# classes, draw a contact sheet of queries and their neighbours, and index the unseen
# classes' images for the search service, all into runs/demo/ (a demo run from before
# is replaced).
demo: $(VENV)/.demo
	$(BIN)/sampling-matters prepare emoji
	$(BIN)/sampling-matters train --config configs/demo.yaml --overwrite
	$(BIN)/sampling-matters embed runs/demo --data emoji --split test --out runs/demo/test_embeddings.pt
	$(BIN)/sampling-matters search runs/demo --gallery runs/demo/test_embeddings.pt \
		--random-queries 8 -k 8 --sheet runs/demo/contact_sheet.png
	rm -rf runs/demo/index
	$(BIN)/sampling-matters index runs/demo --embeddings runs/demo/test_embeddings.pt \
		--out runs/demo/index --quiet
	@echo "metrics (unseen classes): runs/demo/metrics.json"
	@cat runs/demo/metrics.json
	@echo "next, the search service and its page (http://127.0.0.1:8000/):"
	@echo "  $(BIN)/sampling-matters serve runs/demo/index"

clean:
	rm -rf $(VENV) build dist src/*.egg-info
