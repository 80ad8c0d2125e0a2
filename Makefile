# Two commands a user needs: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= edge-data-per-class
DEMO_MAX_SEEDS ?= 6
PYTEST_ARGS ?=
MUTANTS_ARGS ?=

.PHONY: install lint demo smoke test test-slow test-all test-mutants test-mutants-full test-mutants-named ci bench bench-full bench-gpu clean ui up down

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## edge-data-per-class (SPEC epochs): 3 seeds, more where a source claim is open (<= 6 per cell); each claim's status
	$(BIN)/sweep run $(DEMO) --until-decided --max-seeds $(DEMO_MAX_SEEDS)
	@$(BIN)/sweep report $(DEMO)

smoke: $(STAMP)  ## the same path in well under 2 minutes
	$(BIN)/sweep run $(DEMO) --smoke
	$(BIN)/sweep report $(DEMO)

lint: $(STAMP)  ## ruff check (configuration in pyproject.toml)
	$(BIN)/ruff check .

test: $(STAMP) lint  ## ruff, then the default suite (not slow), about 15 minutes on 2 cores
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)  ## the slow tests (real sweeps, resume, faults, multi-node), about 5 minutes
	$(BIN)/python -m pytest -m "slow" $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-mutants: $(STAMP)  ## sampled mutation run of the core (cosmic-ray, fixed seed, 2 workers): killed/survived per module
	$(BIN)/python -m tests.mutation.sample $(MUTANTS_ARGS)

test-mutants-full: $(STAMP)  ## every cosmic-ray mutant of the core (the weekly run: hours), then the named mutants
	$(BIN)/python -m tests.mutation.sample --full --json mutants-full.json $(MUTANTS_ARGS)
	$(BIN)/python -m tests.mutation.run

test-mutants-named: $(STAMP)  ## the named mutants (tests/mutation/run.py): each bug the suite once missed
	$(BIN)/python -m tests.mutation.run

ci:  ## what CI runs: default suite, every slow test, the mutation check; fails on any failure or hang
	.ci/run

bench: $(STAMP)  ## short benchmark run (< 10 min), prints ratios with targets
	$(BIN)/python -m benchmarks.run --short

bench-full: $(STAMP)  ## the issue's sizes plus the whole edge study (about 45 min on 2 cores); writes benchmarks/results.md
	$(BIN)/python -m benchmarks.run --full

# Needs only torch + numpy (no install, no .venv): runs as is on a GPU box with torch alone.
GPU_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
bench-gpu:  ## GPU benchmark (about 5 min on one GPU): benchmarks/out/gpu.json + benchmarks/results-gpu.md
	PYTHONPATH=. $(GPU_PYTHON) -m benchmarks.gpu $(BENCH_GPU_ARGS)

up: $(STAMP)  ## a local Ray head that every later sweep in this folder joins (no Ray start per sweep)
	$(BIN)/sweep up

down: $(STAMP)
	$(BIN)/sweep down

ui: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1

clean:
	rm -rf ray_results reports mlartifacts mlflow.db
