# The README's two commands: `make run` (a local setup on built-in defaults) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint deps venv clean

deps:
	scripts/install-debian-deps

$(BIN)/hotspot-agent: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/hotspot-agent

run: deps venv
	$(BIN)/python -m collector.localstack

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: deps venv lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) run build *.egg-info
