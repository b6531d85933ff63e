# Two commands for a fresh machine (Python 3.10+, a C compiler, make):
#   make demo   creates .venv, installs recctl with its test tools, runs the pipeline on sample_data/
#   make test   runs the test suite (creating .venv first if needed)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test install lint sample bench clean

$(BIN)/recctl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip wheel setuptools
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(BIN)/recctl

install: $(BIN)/recctl

demo: install
	$(BIN)/recctl run configs/quickstart.yaml

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check recctl tests benchmarks

sample: install
	$(BIN)/python -m recctl.data.sample --out sample_data --seed 7

bench: install
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf runs .pytest_cache
