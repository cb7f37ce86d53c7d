# opscockpit: `make run` starts the cockpit, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit bench generate check-generated install system-deps clean

run: $(STAMP)
	$(BIN)/opscockpit run

test: $(STAMP) system-deps lint typecheck unit

install: $(STAMP)

# A C compiler and Python's headers build flows/_fastdecode.c and _fastengine.c (optional
# for pip, so a machine without them still installs; the tests require them in CI).
$(STAMP): pyproject.toml flows/_fastdecode.c flows/_fastengine.c
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { sh .ci/system-packages python3-venv && $(PYTHON) -m venv $(VENV); }
	@sh .ci/system-packages gcc python3-dev
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

system-deps:
	@sh .ci/system-packages prometheus prometheus-alertmanager

lint: $(STAMP)
	$(BIN)/ruff check flows tests
	$(BIN)/ruff format --check flows tests

typecheck: $(STAMP)
	$(BIN)/mypy flows

unit: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python -m tests.bench.run $(BENCH_ARGS)

generate: $(STAMP)
	$(BIN)/python -m flows.schemas schemas

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
