# Two commands for a fresh machine (Python 3.10+, a C compiler, make):
#   make demo   creates .venv, installs recctl with its test tools, runs the pipeline on sample_data/
#   make test   the gates, then the test suite (creating .venv first if needed): ruff check,
#               ruff format --check and mypy must be clean, then pytest (random order)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test install lint typecheck sample bench clean

# recctl/_kernels.c: the compiled kernels (top-K selection, item-kNN rows), declared in setup.py, are
# built by the editable install
$(BIN)/recctl: pyproject.toml setup.py recctl/_kernels.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip wheel setuptools
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(BIN)/recctl

install: $(BIN)/recctl

demo: install
	$(BIN)/recctl run configs/quickstart.yaml

test: lint typecheck
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check recctl tests benchmarks
	$(BIN)/ruff format --check recctl tests benchmarks

typecheck: install
	$(BIN)/mypy

sample: install
	$(BIN)/python -m recctl.data.sample --out sample_data --seed 7

bench: install
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf runs .pytest_cache .mypy_cache
