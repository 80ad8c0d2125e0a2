# Two commands a user needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= edge-data-per-class
PYTEST_ARGS ?=

.PHONY: install demo smoke test test-slow test-all bench bench-full clean ui up down

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## full edge-data-per-class sweep (SPEC epochs, 3 seeds), results table, HTML report
	$(BIN)/sweep run $(DEMO)
	@$(BIN)/sweep report $(DEMO)

smoke: $(STAMP)  ## the same path in well under 2 minutes
	$(BIN)/sweep run $(DEMO) --smoke
	$(BIN)/sweep report $(DEMO)

test: $(STAMP)  ## the default suite (not slow), about 15 minutes on 2 cores
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m "slow" $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)  ## short benchmark run (< 10 min), prints ratios with targets
	$(BIN)/python -m benchmarks.run --short

bench-full: $(STAMP)  ## the issue's sizes plus the whole edge study (about 45 min on 2 cores); writes benchmarks/results.md
	$(BIN)/python -m benchmarks.run --full

up: $(STAMP)  ## a local Ray head that every later sweep in this folder joins (no Ray start per sweep)
	$(BIN)/sweep up

down: $(STAMP)
	$(BIN)/sweep down

ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1

clean:
	rm -rf ray_results reports mlartifacts mlflow.db
