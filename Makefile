# Every target creates .venv itself: `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench lint format typecheck clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/eventkit run recipes/programs/data_job.py --progress --reorder

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check eventkit tests recipes bench
	$(BIN)/ruff format --check eventkit tests recipes bench
	$(BIN)/mypy --strict eventkit
	$(BIN)/mypy --strict tests/typing/api.py recipes

format: $(STAMP)
	$(BIN)/ruff format eventkit tests recipes bench
	$(BIN)/ruff check --fix eventkit tests recipes bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
