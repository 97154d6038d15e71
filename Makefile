# Two commands for a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
BIN = $(VENV)/bin
# uv installs in seconds; it comes from PATH, else from a bootstrap venv made here.
# INSTALLER=pip installs with pip instead (and is the fallback when uv cannot be had).
INSTALLER ?= uv
BOOTSTRAP = .bootstrap
UV = $(shell command -v uv 2>/dev/null || echo $(abspath $(BOOTSTRAP))/bin/uv)
export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db
export MLFLOW_EXPERIMENT_NAME ?= poster-ml
# MLflow runs each entry point with `python`: the environment's own must come first.
export PATH := $(abspath $(BIN)):$(PATH)

# Installs the tested versions from requirements.lock, then the project itself. The lock is
# complete, so nothing else is resolved (--no-deps): rapidocr asks for opencv-python, whose
# cv2 would overwrite opencv-python-headless's, and the lock leaves it out on purpose.
# The packages are compiled to bytecode as they install (pip always does; uv is told to):
# where Python runs with PYTHONDONTWRITEBYTECODE set (as on this project's development
# machines), nothing else writes it, and every process that imports TensorFlow compiled it
# again (benchmarks/RESULTS.md has the seconds each `poster-ml` command saves).
$(BIN)/poster-ml: pyproject.toml requirements.lock
	@test "$(INSTALLER)" != uv || test -x "$(UV)" || { $(PYTHON) -m venv $(BOOTSTRAP) && $(BOOTSTRAP)/bin/pip install --quiet uv; } || true
	@if test "$(INSTALLER)" = uv && test -x "$(UV)"; then \
		echo "installing with uv"; \
		"$(UV)" venv --quiet --seed --allow-existing --python $(PYTHON) $(VENV) && \
		"$(UV)" pip install --quiet --python $(BIN)/python --no-deps --compile-bytecode -r requirements.lock && \
		"$(UV)" pip install --quiet --python $(BIN)/python --no-deps -e .; \
	else \
		echo "installing with pip"; \
		$(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet --upgrade pip && \
		$(BIN)/pip install --quiet --no-deps -r requirements.lock && \
		$(BIN)/pip install --quiet --no-deps -e .; \
	fi
	touch $@

install: $(BIN)/poster-ml

# Refresh the lock after changing a dependency in pyproject.toml (needs PyPI), then run the tests.
lock:
	"$(UV)" pip compile pyproject.toml --extra test --extra server --extra benchmark --extra docs --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --no-emit-package opencv-python --upgrade -o requirements.lock

# The demo tunes the study's three CNNs trained from scratch (benchmarks/RESULTS.md has its
# time on two cores). The pretrained variants are left out: offline they start from random
# weights, not the study's transfer learning, and stay at chance. Where ImageNet weights can
# be had: make demo DEMO_VARIANTS=all (or name them: vgg16_features,inception_v3_finetune_aug ...).
# 1,000 posters and up to 12 epochs (patience 4) are what all three need to beat chance on
# test, measured in benchmarks/RESULTS.md; the quick profile's 400 and 4 are too few.
DEMO_VARIANTS ?= basic_cnn,regularized_cnn,regularized_cnn_aug
DEMO_POSTERS ?= 1000
DEMO_OVERRIDES ?= max_epochs=12 patience=4 lr_patience=3
demo: install
	@test "$(DEMO_VARIANTS)" != "basic_cnn,regularized_cnn,regularized_cnn_aug" || echo "the demo tunes the three CNNs trained from scratch; the pretrained variants need ImageNet weights (offline they start from random weights and stay at chance): make demo DEMO_VARIANTS=all adds them"
	$(BIN)/mlflow run . -e main --env-manager local -P variants=$(DEMO_VARIANTS) \
		-P count=$(DEMO_POSTERS) -P overrides="$(DEMO_OVERRIDES)"

# MLproject is written from the config dataclasses; run this after changing a setting.
mlproject: install
	$(BIN)/python -m poster_ml.config.mlproject MLproject

# ruff (format and lint rules in pyproject.toml), mypy on the package, and the manual built
# with --strict (a broken link or a page left out of the nav fails); CI runs it first.
lint: install
	$(BIN)/ruff format --check poster_ml tests benchmarks entrypoints
	$(BIN)/ruff check poster_ml tests benchmarks entrypoints
	$(BIN)/mypy
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir $(or $(TMPDIR),/tmp)/poster-ml-site

# The manual (docs/, mkdocs-material) on http://127.0.0.1:8000, rebuilt as pages change.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# The tests run in pytest-xdist workers (each gets its share of TensorFlow's threads:
# tests/conftest.py); PYTEST_WORKERS=N sets how many, 0 runs them in one process. `make
# test` is the whole suite, what CI runs, in three workers on CI's two cores: its slow tests
# wait on servers, killed processes and outages, and a third worker fills that time (798 s
# against 897 s with two; a fourth slows it again, 879 s against 816 s). `make test-fast`
# leaves out the minutes-long end-to-end tests (marked slow), the check to run after each
# change, in two workers: busy tests only, which a third slows down (375 s against 346 s;
# benchmarks/RESULTS.md has all of these).
# The whole suite's tests go to the workers one at a time, slow ones first (tests/conftest.py
# orders them): xdist's default first hands each worker a long run of consecutive tests,
# which put every slow test on one worker. The fast tier keeps the default, so that a
# module's server fixtures start on one worker only.
PYTEST_WORKERS ?=
xdist = $(if $(filter 0,$(1)),,-n $(1) $(2))
test: install
	$(BIN)/python -m pytest $(call xdist,$(or $(PYTEST_WORKERS),3),--maxschedchunk 1)

test-fast: install
	$(BIN)/python -m pytest $(call xdist,$(or $(PYTEST_WORKERS),2)) -m "not slow"

ui: install
	@echo "open http://127.0.0.1:5000/#/experiments?workflowType=machine_learning"
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI)

MODEL ?= models:/poster-ml@champion
serve: install
	$(BIN)/poster-ml serve --model $(MODEL)

# The team server (README, "Running as a team"); POSTER_ML_ADMIN_PASSWORD must be set.
server: install
	$(BIN)/poster-ml server

.PHONY: install lock mlproject lint docs demo test test-fast ui serve server
