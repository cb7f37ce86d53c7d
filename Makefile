# opscockpit: `make run` starts the cockpit, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# What the compiled build is made from (setup.py): the C modules, and the Python
# modules Cython compiles (a `# cython:` line on top) with their .pxd types.
COMPILED := setup.py flows/pgo.py flows/_fastdecode.c flows/_idtable.c flows/_prefetch.h \
	$(shell grep -rl --include='*.py' '^# cython:' flows) $(wildcard flows/*/*.pxd)
# The tests run a second time on the interpreted build (the same sources, not compiled).
INTERPRETED_TESTS := tests/families tests/test_runtime.py tests/test_properties.py \
	tests/test_snapshots.py tests/test_reference.py tests/test_reference_health.py

.PHONY: run test lint typecheck unit unit-interpreted bench image-check generate check-generated install system-deps screenshot clean

run: $(STAMP)
	$(BIN)/opscockpit run --config docker/opscockpit.toml

test: $(STAMP) system-deps lint typecheck unit unit-interpreted

install: $(STAMP)

# A C compiler and Python's headers build the compiled modules (optional for pip,
# so a machine without them still installs; the tests require them in CI).
$(STAMP): pyproject.toml $(COMPILED)
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { sh .ci/system-packages python3-venv && $(PYTHON) -m venv $(VENV); }
	@sh .ci/system-packages gcc python3-dev
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@# Built again from branch counts of a simulated day of each mix (~2 min).
	$(BIN)/python -m flows.pgo
	@# An editable install leaves the sources uncompiled: where bytecode is not written
	@# (PYTHONDONTWRITEBYTECODE), every command compiled them again (~70 ms at start).
	$(BIN)/python -m compileall -q flows
	@touch $(STAMP)

# Prometheus for the rule and scrape tests; Chromium and its driver for the wall display's.
system-deps:
	@sh .ci/system-packages prometheus prometheus-alertmanager chromium chromium-driver

lint: $(STAMP)
	$(BIN)/ruff check flows tests
	$(BIN)/ruff format --check flows tests

typecheck: $(STAMP)
	$(BIN)/mypy flows

unit: $(STAMP)
	$(BIN)/pytest

unit-interpreted: $(STAMP)
	OPSCOCKPIT_PURE_PYTHON=1 $(BIN)/pytest $(INTERPRETED_TESTS)

# The Docker image's build stage run on this host (tests/image.py): Docker need not
# run here. CI runs it after the tests (~6 min: a venv, pip, the profile-guided build).
image-check: $(STAMP)
	$(BIN)/python -m tests.image

bench: $(STAMP)
	$(BIN)/python -m tests.bench.run $(BENCH_ARGS)

# The README's picture of the wall display, from a live `opscockpit run` in headless Chromium.
screenshot: $(STAMP) system-deps
	$(BIN)/python -m tests.browser grafana/screenshots/wall-display.png

generate: $(STAMP)
	$(BIN)/python -m flows.schemas schemas
	$(BIN)/python -m flows.metrics README.md
	$(BIN)/python -m flows.cockpit.rules README.md
	$(BIN)/opscockpit grafana generate

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
