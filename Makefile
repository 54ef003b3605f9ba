# One command each: `make quickstart` (set up + run the offline demo), `make test` (set up + run the tests).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast test-arm64 lint format quickstart clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install torch==2.14.1 torchvision==0.29.1
	$(VENV)/bin/pip install -e ".[all]"
	touch $(STAMP)

setup: $(STAMP)

test: setup
	$(PY) -m pytest -q

# ruff: lint and formatting, configured in pyproject.toml (CI runs this before the tests).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# aarch64 kernels cross-compiled and run under qemu-user (needs g++-aarch64-linux-gnu, qemu-user-static).
test-arm64:
	tests/arm/run.sh

# The offline demo: bundled teacher, post-training ternary, QAT, QAT + KD, packed runtime (out/quickstart/).
quickstart: setup
	$(VENV)/bin/ternaryclip quickstart --out out/quickstart

clean:
	rm -rf $(VENV) build out src/*.egg-info
