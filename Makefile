# tickcast: `make run` serves on http://0.0.0.0:8000, `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: run test lint format bench clean

# Creating $(VENV) and installing into it happen under a lock (flock, from util-linux), and
# each step checks again once it holds the lock: two `make run` started at once in a fresh
# clone take turns, and the second finds the work done instead of breaking pip. Without
# flock (macOS) the steps run unlocked.
LOCKED := $(if $(shell command -v flock 2>/dev/null),flock $(VENV).lock,)

$(PY):
	$(LOCKED) sh -c '[ -x $(PY) ] || { $(PYTHON) -m venv $(VENV) && $(PY) -m pip install --quiet --upgrade pip; }'

$(VENV)/.installed: pyproject.toml | $(PY)
	$(LOCKED) sh -c '[ $@ -nt pyproject.toml ] || { $(PY) -m pip install --quiet -e . && touch $@; }'

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(LOCKED) sh -c '[ $@ -nt pyproject.toml ] || { $(PY) -m pip install --quiet -e ".[dev]" && touch $@ $(VENV)/.installed; }'

run: $(VENV)/.installed
	$(VENV)/bin/tickcast serve $(ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests
	$(VENV)/bin/mypy --strict src

# The suite runs on TEST_WORKERS processes (its tests mostly wait on sockets and child
# processes); tests/conftest.py keeps the ones that load or time the machine apart. Then
# the tests marked solo run alone: they need a client that keeps up with a fast feed.
# (pytest's status 5 is "no test selected": ARGS naming files without solo tests.)
TEST_WORKERS ?= 4

test: lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not solo" --durations=15 $(ARGS)
	$(PY) -m pytest -m solo --durations=5 $(ARGS) || [ $$? -eq 5 ]

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check --fix src tests
	$(VENV)/bin/ruff format src tests

$(VENV)/.installed-bench: pyproject.toml | $(PY)
	$(LOCKED) sh -c '[ $@ -nt pyproject.toml ] || { $(PY) -m pip install --quiet -e ".[bench]" && touch $@ $(VENV)/.installed; }'

# `make bench` runs the load benchmark against tickcast and both baselines and keeps the
# JSON under bench-results/; BENCH_ARGS overrides the load.
BENCH_ARGS ?= --clients 1000 --symbols 10 --rate 1 --duration 10 --compare naive --compare raw

bench: $(VENV)/.installed-bench
	mkdir -p bench-results
	$(VENV)/bin/tickcast bench $(BENCH_ARGS) --json bench-results/bench-$$(date +%Y%m%d-%H%M%S).json

clean:
	rm -rf $(VENV) $(VENV).lock .mypy_cache .pytest_cache .ruff_cache
