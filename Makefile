# Front door of the project. `make help` lists the targets.
# The environment is a pip virtual environment in .venv: `make report` installs the core
# (requirements-core.lock), every other target the whole requirements.lock (extras too).

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CORE   := $(VENV)/.installed-core
DATA   := data/synthetic
BATCH  ?= batches/paper.yaml
JOBS   ?=

.DEFAULT_GOAL := help
.PHONY: help report test test-fast data network notebooks lab lint format clean-reports bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

PIP := $(PY) -m pip install --quiet --disable-pip-version-check

# the core (what `make report` needs): requirements-core.lock, the package, its kernel
$(CORE): requirements-core.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements-core.lock 2>&1 | grep -v "is ignored: it is neither" || true
	$(PIP) --no-deps -e . 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) -c "import analysis, duckdb, papermill, statsmodels"
	$(PY) -m ipykernel install --sys-prefix --name analysis --display-name "Python (analysis)" >/dev/null
	@touch $(CORE)

# everything (tests, lint, engines, JupyterLab): the whole requirements.lock
$(STAMP): requirements.lock $(CORE)
	$(PIP) -r requirements.lock 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) -c "import pytest, pyspark, psycopg, jupyterlab"
	@touch $(STAMP)

env: $(STAMP) ## create .venv from the lock file, extras included (if missing or out of date)

$(DATA)/dataset.json: $(CORE) data/synthetic_calibration.yaml
	$(PY) -m analysis synth --out $(DATA)

data: $(DATA)/dataset.json ## build the synthetic default cohort (if missing)

data/network/dataset.json: $(CORE) data/synthetic_calibration.yaml
	$(PY) -m analysis synth --patients 20000 --practices 20 --out data/network

network: data/network/dataset.json ## build the synthetic network of 20 practices (batches/practices.yaml)

report: $(CORE) $(DATA)/dataset.json $(if $(findstring practices,$(BATCH)),data/network/dataset.json,) ## the main job: run the report batch on the default data
	$(PY) -m analysis batch $(BATCH) $(if $(JOBS),--jobs $(JOBS),)

lint: $(STAMP) ## check style (ruff's rules and formatting) and the module map's layers (import-linter)
	$(PY) -m ruff check src tests tools benchmarks notebooks
	$(VENV)/bin/lint-imports --no-cache
	$(PY) tools/check_layers.py --strict
	$(PY) tools/core_lock.py --check || { echo 'requirements-core.lock is out of date: python tools/core_lock.py'; exit 1; }
	$(PY) -m ruff format --check src tests tools benchmarks notebooks/*.ipynb

format: $(STAMP) ## format the code with ruff
	$(PY) -m ruff format src tests tools benchmarks

test: lint $(DATA)/dataset.json ## run the whole test suite (lint and format check included)
	$(PY) -m pytest -q -n auto --dist loadgroup

FAST_SKIP := tests/test_engines.py tests/test_engine_batch.py tests/test_batch.py tests/test_disclosure_batch.py tests/test_notebooks.py
test-fast: $(STAMP) $(DATA)/dataset.json ## the inner loop: the suite without the engines, whole batches and slow tests
	$(PY) -m pytest -q -n auto --dist loadgroup -m "not slow" $(addprefix --ignore=,$(FAST_SKIP))

LAB_ARGS ?=
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)
lab: $(STAMP) $(DATA)/dataset.json ## open the notebooks in JupyterLab (project kernel); LAB_ARGS="--port 8890 --no-browser"
	cd notebooks && ../$(VENV)/bin/jupyter lab $(ROOT_FLAG) $(LAB_ARGS)

notebooks: $(STAMP) ## sync each notebook with its .py source (jupytext), outputs cleared
	$(VENV)/bin/jupytext --sync notebooks/[0-9][0-9]_*.ipynb
	$(PY) tools/check_notebooks_clean.py notebooks/[0-9][0-9]_*.ipynb

bench: $(STAMP) ## run the benchmarks (prints tables; takes minutes)
	$(PY) benchmarks/run_all.py

clean-reports: ## delete generated reports
	find reports -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
