# One command each: `make quickstart` (set up + run the offline demo), `make test` (set up + run the tests).
# Each installs what it needs (its own stamp in .venv): `make test` after `make quickstart` adds the rest.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
QUICKSTART_STAMP := $(VENV)/.installed-quickstart
DOCS_STAMP := $(VENV)/.installed-docs
# The compiled kernels: rebuilt whenever a kernel source or the CMake file changes, so that a `.cpp`
# edit followed by `make test` runs the new code.
KERNEL_SOURCES := $(shell find src/ternaryclip/kernels -name "*.cpp" -o -name "*.h" -o -name "*.inc") CMakeLists.txt
KERNELS_STAMP := $(VENV)/.kernels-built
# WERROR=1: compiler warnings fail the kernels' build (CI exports it).
WERROR ?=
BUILD_FLAGS = $(if $(WERROR),--config-settings=cmake.define.TCLIP_WERROR=ON)
# TORCH_INDEX=https://download.pytorch.org/whl/cpu: torch without its CUDA libraries (~4.6 GB of the
# ~5.9 GB the quickstart's set weighs with PyPI's Linux wheels); default: PyPI's.
TORCH_INDEX ?=
TORCH_FROM = $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))

.PHONY: setup build test test-fast test-arm64 lint format quickstart docs constraints clean

# Versions from constraints.txt (the tested set); the build tools are installed too, for the
# rebuilds below without build isolation.  What the tests need: every extra.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -c constraints.txt $(TORCH_FROM) torch torchvision
	$(PIP) install -c constraints.txt scikit-build-core nanobind
	$(PIP) install -c constraints.txt -e ".[all]" $(BUILD_FLAGS)
	touch $(STAMP)
	touch -r $(STAMP) $(KERNELS_STAMP)

# What the demo needs (the `quickstart` extra: torch, open_clip, tqdm, matplotlib), not OpenVINO,
# Ray, Playwright, ONNX or CLIP_benchmark.
$(QUICKSTART_STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -c constraints.txt $(TORCH_FROM) torch torchvision
	$(PIP) install -c constraints.txt scikit-build-core nanobind
	$(PIP) install -c constraints.txt -e ".[quickstart]" $(BUILD_FLAGS)
	touch $(QUICKSTART_STAMP)
	touch -r $(QUICKSTART_STAMP) $(KERNELS_STAMP)

# Rebuilt after whichever install above ran (hence the nested make, which runs after it).
$(KERNELS_STAMP): $(KERNEL_SOURCES)
	$(PIP) install --no-deps --no-build-isolation -e . -q $(BUILD_FLAGS)
	touch $(KERNELS_STAMP)

setup: $(STAMP)

build: setup
	@$(MAKE) --no-print-directory $(KERNELS_STAMP)

test: build
	$(PY) -m pytest -q

# ruff: lint and formatting, configured in pyproject.toml (CI runs this before the tests).
# C++: clang-format (Debian's clang-format) against .clang-format, on the kernels and their aarch64 tests.
CXX_SOURCES = $(shell find src/ternaryclip/kernels tests/arm -name "*.cpp" -o -name "*.h" -o -name "*.inc")

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	clang-format --dry-run --Werror $(CXX_SOURCES)

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	clang-format -i $(CXX_SOURCES)

test-fast: build
	$(PY) -m pytest -q -m "not slow"

# aarch64 kernels cross-compiled and run under qemu-user (needs g++-aarch64-linux-gnu, qemu-user-static).
test-arm64:
	tests/arm/run.sh

# The offline demo: bundled teacher, post-training ternary, QAT, QAT + KD, packed runtime (out/quickstart/).
quickstart: $(QUICKSTART_STAMP)
	@$(MAKE) --no-print-directory $(KERNELS_STAMP)
	$(VENV)/bin/ternaryclip quickstart --out out/quickstart

# The documentation site (docs/, mkdocs.yml): MkDocs from the `docs` extra, offline, warnings fail it.
$(DOCS_STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -c constraints.txt "mkdocs>=1.6"
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(VENV)/bin/mkdocs build --strict

# Rewrite constraints.txt from this environment (what the extras pull in), after a deliberate upgrade.
constraints: setup
	$(PY) scripts/freeze_constraints.py > constraints.txt

clean:
	rm -rf $(VENV) build out src/*.egg-info
