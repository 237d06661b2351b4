# tickcast: `make run` serves on http://0.0.0.0:8000, `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: run test lint format bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/tickcast serve $(ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy --strict src

# The suite runs on TEST_WORKERS processes (its tests mostly wait on sockets and child
# processes); tests/conftest.py keeps the ones that load or time the machine apart.
TEST_WORKERS ?= 4

test: lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=15 $(ARGS)

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check --fix src tests
	$(VENV)/bin/ruff format src tests

$(VENV)/.installed-bench: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $@ $(VENV)/.installed

# `make bench` runs the load benchmark against tickcast and both baselines and keeps the
# JSON under bench-results/; BENCH_ARGS overrides the load.
BENCH_ARGS ?= --clients 1000 --symbols 10 --rate 1 --duration 10 --compare naive --compare raw

bench: $(VENV)/.installed-bench
	mkdir -p bench-results
	$(VENV)/bin/tickcast bench $(BENCH_ARGS) --json bench-results/bench-$$(date +%Y%m%d-%H%M%S).json

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
