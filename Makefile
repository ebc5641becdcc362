# Two commands for a fresh machine with Python >= 3.11 and make: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP_FLAGS ?= --quiet --disable-pip-version-check

.PHONY: demo test test-fast lint typecheck install install-test clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "nugen-etl needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(PIP_FLAGS) -e ".[report]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(PIP_FLAGS) -e ".[test,report]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

demo: $(VENV)/.installed
	$(BIN)/nugen-etl demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The in-process tests only (marker `unit`, tests/conftest.py): about a minute.
test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

# Lint and format (ruff: pyflakes, pycodestyle, import order, bugbear, pyupgrade, blind excepts; pyproject.toml).
$(VENV)/.installed-lint: pyproject.toml | $(BIN)/python
	$(BIN)/pip install $(PIP_FLAGS) -e ".[lint]"
	touch $@

lint: $(VENV)/.installed-lint
	$(BIN)/ruff check nugen_etl bench tests dags
	$(BIN)/ruff format --check nugen_etl bench tests dags

# Types: mypy --strict over nugen_etl (pyproject.toml); the test extras bring the typed libraries it reads.
typecheck: $(VENV)/.installed-lint $(VENV)/.installed-test
	$(BIN)/mypy

clean:
	rm -rf $(VENV) nugen-data .pytest_cache

# Benchmarks: `make bench` writes bench/results/latest.{json,md}; `make bench-quick` is the
# short development run (bench/results/quick/). PostgreSQL parts use $NUGEN_BENCH_PG_URL or
# $NUGEN_TEST_PG_URL and are skipped without either. Extra options: BENCH_ARGS="--scenarios fanout".
.PHONY: bench bench-quick
bench: $(VENV)/.installed-test
	$(BIN)/pip install $(PIP_FLAGS) -e ".[bench]"
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: $(VENV)/.installed-test
	$(BIN)/pip install $(PIP_FLAGS) -e ".[bench]"
	$(BIN)/python -m bench --quick $(BENCH_ARGS)

# Airflow: only the DAG and compose tests; `make stack` starts docker-compose.yml
# (creating .env from .env.example the first time: replace its change-me values).
.PHONY: test-dags stack
test-dags: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests/test_dags.py tests/test_compose.py $(PYTEST_ARGS)

stack:
	test -f .env || { cp .env.example .env; echo "created .env from .env.example: edit its secrets"; }
	docker compose up -d --build
