# One venv, one stamp: `make install` reinstalls only when pyproject.toml changes.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKSPACE ?= $(CURDIR)/workspace

export RAY_USAGE_STATS_ENABLED := 0
export RAY_AUTH_MODE := disabled

.PHONY: install demo test bench ui report lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/motionlab --workspace $(WORKSPACE) demo

# The browser tests load the MLflow UI and the report in Debian's headless Chromium.
test: install
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	$(BIN)/ruff check platform pipelines experiments benchmarks tests
	# bytecode for the project even where PYTHONDONTWRITEBYTECODE is set: every Ray worker process imports it
	$(BIN)/python -m compileall -q platform >/dev/null
	$(BIN)/python -m pytest -q tests

bench: install
	$(BIN)/python benchmarks/pipeline_throughput.py --fsq-steps 30 --rounds 2
	$(BIN)/python benchmarks/train_throughput.py

# The MLflow UI over the workspace's runs, on loopback only: http://127.0.0.1:5000
ui: install
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server --host 127.0.0.1 --port 5000 \
		--backend-store-uri sqlite:///$(WORKSPACE)/mlflow.db

report: install
	$(BIN)/motionlab --workspace $(WORKSPACE) report

lint: install
	$(BIN)/ruff check platform pipelines experiments benchmarks tests

clean:
	rm -rf $(VENV) workspace
