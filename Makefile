# Everything runs from a project-local virtualenv so a fresh machine needs only python3.
# Installs come from the lock files in requirements/ (hashes checked); `make lock` rewrites them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
LOCK_FLAGS := --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes --no-header --quiet

.PHONY: venv test lint unit sanitize demo bench kube-binaries lock clean

# setup.py builds the C line scanner (operator/natflow/flowlogs/_textscan.c) in place.
$(STAMP): requirements/dev.txt setup.py $(wildcard operator/natflow/flowlogs/*.c)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -qq --require-hashes --no-deps -r requirements/dev.txt
	$(BIN)/pip install -qq --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

# The local kube-apiserver + etcd the integration tests start (built once from Debian's packages, cached).
kube-binaries:
	scripts/ensure-kube-binaries.sh >/dev/null

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q -m "not integration and not e2e and not slow"

test: lint kube-binaries $(STAMP)
	$(BIN)/pytest -q
	scripts/sanitize.sh

# The C extensions with ASan + UBSan (gcc) in a temporary copy of the package, under the hostile-input
# corpus, the fuzzer and the scanner/decoder tests (scripts/sanitize.sh).
sanitize: $(STAMP)
	scripts/sanitize.sh

demo: $(STAMP)
	$(BIN)/natflow attribute --cluster examples/cluster --aws examples/aws --flow-logs examples/flowlogs -o table

bench: $(STAMP)
	$(BIN)/python -m bench

# Re-resolve every dependency to the newest versions pyproject.toml allows and rewrite the locks.
# The runtime lock (the image's) takes the dev lock's versions, so tests and image run the same code.
lock:
	$(PYTHON) -m pip install --quiet uv==$(UV_VERSION)
	$(PYTHON) -m uv pip compile pyproject.toml requirements/build.in --extra dev $(LOCK_FLAGS) -o requirements/dev.txt
	$(PYTHON) -m uv pip compile pyproject.toml requirements/build.in -c requirements/dev.txt $(LOCK_FLAGS) -o requirements/runtime.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
