# Two commands do all set-up on a fresh clone: `make demo` and `make test`.
# `make test-fast` is the quick loop: lint and every test not marked slow.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint format bench clean

# Rebuild the environment whenever the dependencies (or the native tap's source) change;
# the editable install compiles the tap in place when a C compiler is present.
$(STAMP): pyproject.toml hatch_build.py recorder/transport/agora/_tap.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/recorder demo

lint: $(STAMP)
	$(BIN)/ruff check recorder storage migrations tests bench
	$(BIN)/ruff format --check recorder storage migrations tests bench
	$(BIN)/mypy

test: lint
	PYTHONASYNCIODEBUG=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: lint
	PYTHONASYNCIODEBUG=1 $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

format: $(STAMP)
	$(BIN)/ruff format recorder storage migrations tests bench
	$(BIN)/ruff check --fix recorder storage migrations tests bench

bench: $(STAMP)
	@for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
