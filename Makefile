# Quick start: `make run` (the bot on its embedded defaults) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint format setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,postgres]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/rounds run

# The suite runs every database test on SQLite and on PostgreSQL; a PostgreSQL run that
# cannot start fails instead of being skipped.
test: $(STAMP)
	scripts/test-deps
	$(BIN)/ruff check .
	ROUNDS_REQUIRE_POSTGRES=1 $(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check rounds tests

format: $(STAMP)
	$(BIN)/ruff format rounds tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
