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

demo:
	@echo "make demo arrives with the pipeline (issue 4): data sets, backbones and training."
	@echo "Until then, the core is exercised by 'make test' and 'make bench'."
	@exit 1

clean:
	rm -rf $(VENV) build dist src/*.egg-info
