# Two commands for a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN = $(VENV)/bin
export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db
export MLFLOW_EXPERIMENT_NAME ?= poster-ml
# MLflow runs each entry point with `python`: the environment's own must come first.
export PATH := $(abspath $(BIN)):$(PATH)

$(BIN)/poster-ml: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,benchmark]"
	touch $@

install: $(BIN)/poster-ml

demo: install
	$(BIN)/mlflow run . -e main --env-manager local

test: install
	$(BIN)/python -m pytest

ui: install
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI)

.PHONY: install demo test ui
