# Two commands set up a fresh machine: `make demo` and `make test`. Both create .venv when
# missing and install the pinned requirements (offline-resolvable from the package index).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export MARKETING_DATA_DIR ?= $(CURDIR)/data
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install demo test lint query clean airflow airflow-stop docs bench

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
	$(VENV)/bin/ruff check dags include plugins tests scripts bench
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check dags include plugins tests scripts bench

query: $(STAMP)  ## open the analysts' read-only copy (never blocks the pipeline)
	@test -f $(MARKETING_DATA_DIR)/analytics.duckdb \
		|| { echo "no $(MARKETING_DATA_DIR)/analytics.duckdb yet: run make demo or a DAG run first"; exit 1; }
	$(PY) -m marketing.query $(MARKETING_DATA_DIR)/analytics.duckdb

airflow: $(STAMP)  ## start api-server, scheduler, dag-processor, triggerer on 127.0.0.1 (AIRFLOW_API_PORT, default 8080)
	scripts/airflow_up.sh

airflow-stop:  ## stop exactly the services make airflow started (pid files in $(AIRFLOW_HOME)/run)
	scripts/airflow_down.sh

docs: $(STAMP)  ## static dbt docs site (one HTML file) under data/reports/dbt_docs/
	scripts/dbt_docs.sh

SCALE ?= S
bench: $(STAMP)  ## time every stage at SCALE=S|M|L (10k/100k/1M users) -> bench/results/
	$(PY) bench/run.py --scale $(SCALE)

clean:
	rm -rf data .airflow dbt_project/target dbt_project/logs
