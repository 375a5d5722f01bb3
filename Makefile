# The two commands: `make test` and `make demo`. Each creates .venv and installs
# what it needs on first use (and again whenever pyproject.toml or the
# constraints change), so a fresh machine needs only Python 3.11+ and make.

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Exact pins, so pip does not spend minutes backtracking boto3 against the botocore
# that aiobotocore (s3fs) pins; see the comment at the top of the file.
CONSTRAINTS := constraints.txt
PYTEST_ARGS ?=
STORE ?=

BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: test lint typecheck unit demo bench lambda clean

# pip first: a fresh venv ships pip 23, which fails on a yanked fsspec that old s3fs
# releases pin, and pips before 25.3 backtrack boto3 for minutes.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 or newer is needed (set PYTHON=...)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade 'pip>=25.3'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e '.[dev]'
	@touch $(STAMP)

## test: lint, type-check and run the whole test suite (what CI runs)
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

## demo: run the main job on an embedded moto S3 server (or STORE=url)
demo: $(STAMP)
	$(BIN)/python -m documee_remote.demo $(if $(STORE),--store $(STORE),)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

## bench: the benchmarks; tables and plots land in benchmarks/results/
bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)
	$(BIN)/python -m benchmarks.stall
	$(BIN)/python -m benchmarks.cache_bench
	$(BIN)/python -m benchmarks.fanout
	$(BIN)/python -m benchmarks.fanout --api append --baseline-ref none

## lambda: the deployment zip for AWS Lambda (dist/documee-remote-lambda.zip)
lambda: $(STAMP)
	$(BIN)/python scripts/build_lambda.py --out dist/documee-remote-lambda.zip

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
