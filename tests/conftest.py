"""Shared fixtures: an isolated tracking store and small prepared datasets."""

from __future__ import annotations

import logging
import os
import uuid

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import mlflow
import pytest
from helpers import POSTGRES

from poster_ml.cli import main
from poster_ml.config import PreprocessConfig
from poster_ml.data.prepare import prepare
from poster_ml.quiet import configure_logger


@pytest.fixture(autouse=True)
def isolated_tracking(tmp_path_factory, monkeypatch):
    """Every test gets its own SQLite tracking store, and its artifacts land beside it
    (in ./mlruns of a temporary working directory), never in the checkout."""
    folder = tmp_path_factory.mktemp("mlflow")
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    # MLflow's fluent API keeps the URI of the last set_tracking_uri in the process.
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    # It keeps the experiment of the last set_experiment too, whose id means nothing in a
    # new store; MLflow has no public call to forget it.
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    # `--verbose` sets it for the steps a command starts; it must not outlive one test.
    monkeypatch.delenv("POSTER_ML_VERBOSE", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    # Prepared data fetched from a run lands in a cache of the test's own, not ~/.cache.
    monkeypatch.setenv("POSTER_ML_DATA_CACHE", str(folder / "data-cache"))
    # What the command line does: the `poster_ml` logger prints at INFO, on stdout. A test
    # that calls a step directly sees what `poster-ml <step>` would print.
    monkeypatch.delenv("POSTER_ML_QUIET", raising=False)
    configure_logger(logging.INFO)


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """400 synthetic posters prepared at 64 pixels, shared by the read-only tests."""
    out = tmp_path_factory.mktemp("prepared")
    return prepare(PreprocessConfig(count=400, size=64, out=str(out), seed=7))


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory):
    """One quick train call on two variants, its tracking store and its data folder."""
    folder = tmp_path_factory.mktemp("train")
    store = f"sqlite:///{folder / 'mlflow.db'}"
    data = (
        folder / "data" / "prepared"
    )  # The default location, missing: train prepares the synthetic default.
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("MLFLOW_TRACKING_URI", store)
        patch.setenv(
            "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1"
        )  # A short run still gets samples.
        exit_code = main(
            [
                "train",
                "--profile",
                "quick",
                "--variants",
                "basic_cnn,vgg16_features",
                "--trials",
                "0",
                "--overrides",
                "max_epochs=2 batch_size=16",
            ]
        )
    assert exit_code == 0
    return store, data


@pytest.fixture
def postgres_database():
    """Makes databases of their own on the local PostgreSQL server (database `test` is the
    way in) and drops them afterwards. Without a server the test skips on a laptop and
    fails under CI, where .ci/run has started one."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(f"{POSTGRES}/test", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        if os.environ.get("CI"):
            pytest.fail(f"no PostgreSQL server on 127.0.0.1:5432 under CI: {error}")
        pytest.skip(f"no PostgreSQL server on 127.0.0.1:5432: {error}")
    made = []

    def make(purpose: str) -> str:
        name = f"poster_ml_{purpose}_{uuid.uuid4().hex[:8]}"
        admin.execute(f"CREATE DATABASE {name}")
        made.append(name)
        return name

    try:
        yield make
    finally:
        for name in made:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()
