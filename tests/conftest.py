"""Shared fixtures: an isolated tracking store and small prepared datasets."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from poster_ml.config import PreprocessConfig
from poster_ml.preprocess import prepare


@pytest.fixture(autouse=True)
def isolated_tracking(tmp_path_factory, monkeypatch):
    """Every test gets its own SQLite tracking store and never touches ./mlflow.db."""
    store = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """400 synthetic posters prepared at 64 pixels, shared by the read-only tests."""
    out = tmp_path_factory.mktemp("prepared")
    return prepare(PreprocessConfig(count=400, size=64, out=str(out), seed=7))
