# Two commands set up a fresh machine: `make demo` and `make test`. Both create .venv when
# missing and install the pinned requirements (offline-resolvable from the package index).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export MARKETING_DATA_DIR ?= $(CURDIR)/data
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install demo test lint query clean

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)  ## generate the sample shop, run the DAG for its last day, print a summary
	scripts/demo.sh

test: $(STAMP)  ## the whole suite: lint, unit, DAG integrity, end-to-end DAG runs
	$(VENV)/bin/ruff check dags include plugins tests scripts
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check dags include plugins tests scripts

query: $(STAMP)  ## open the analysts' read-only copy
	$(PY) -m marketing.query $(MARKETING_DATA_DIR)/analytics.duckdb

clean:
	rm -rf data .airflow dbt_project/target dbt_project/logs
