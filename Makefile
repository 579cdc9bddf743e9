# Two commands do all set-up on a fresh clone: `make demo` and `make test`.
# `make demo` installs only what the recorder needs to run (no dev tools);
# `make test` adds the dev tools (pytest, ruff, mypy, ...) to the same .venv.
# `make test-fast` is the quick loop: lint and every test not marked slow.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --disable-pip-version-check --progress-bar on
# Stamps: each set of packages is installed once, again only when the dependencies (or the
# native tap's source) change; the editable install compiles the tap in place when a C
# compiler is present.
SOURCES := pyproject.toml hatch_build.py recorder/transport/agora/_tap.c
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed-dev

.PHONY: demo install test test-fast lint format bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || \
		{ echo "error: '$(PYTHON)' is not a Python 3.11 or newer; run e.g. 'make demo PYTHON=python3.12'"; exit 1; }
	@echo "==> creating $(VENV) with $$($(PYTHON) --version)"
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): $(SOURCES) | $(BIN)/python
	@echo "==> installing recorder and its runtime dependencies into $(VENV) (first run only)"
	$(PIP) -e .
	@touch $@

$(DEV): $(RUNTIME) $(SOURCES)
	@echo "==> installing the development tools into $(VENV) (first run only)"
	$(PIP) -e '.[dev]'
	@touch $@

install: $(RUNTIME)
	@echo "recorder is installed in $(VENV); put it on your PATH with: . $(VENV)/bin/activate"

demo: $(RUNTIME)
	@$(BIN)/recorder demo

lint: $(DEV)
	$(BIN)/ruff check recorder storage migrations tests bench
	$(BIN)/ruff format --check recorder storage migrations tests bench
	$(BIN)/mypy

test: lint
	PYTHONASYNCIODEBUG=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: lint
	PYTHONASYNCIODEBUG=1 $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

format: $(DEV)
	$(BIN)/ruff format recorder storage migrations tests bench
	$(BIN)/ruff check --fix recorder storage migrations tests bench

bench: $(DEV)
	@for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
