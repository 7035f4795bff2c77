# Everything runs from a project-local virtualenv so a fresh machine needs only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint unit demo bench clean

# setup.py builds the C line scanner and Parquet decoder (operator/natflow/flowlogs/_textscan.c,
# _parquet.c) in place.
$(STAMP): pyproject.toml setup.py operator/natflow/flowlogs/_textscan.c operator/natflow/flowlogs/_parquet.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -m "not integration and not e2e"

test: lint $(STAMP)
	$(BIN)/pytest -q

demo: $(STAMP)
	$(BIN)/natflow attribute --cluster examples/cluster --aws examples/aws --flow-logs examples/flowlogs -o table

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
