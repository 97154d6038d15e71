"""Shared fixtures: an isolated tracking store and small prepared datasets."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from poster_ml.cli import main
from poster_ml.config import PreprocessConfig
from poster_ml.data.prepare import prepare


@pytest.fixture(autouse=True)
def isolated_tracking(tmp_path_factory, monkeypatch):
    """Every test gets its own SQLite tracking store, and its artifacts land beside it
    (in ./mlruns of a temporary working directory), never in the checkout."""
    folder = tmp_path_factory.mktemp("mlflow")
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)


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
    data = folder / "prepared"  # Missing: train must prepare the synthetic default itself.
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("MLFLOW_TRACKING_URI", store)
        exit_code = main([
            "train", "--profile", "quick", "--data", str(data), "--variants", "basic_cnn,vgg16_features",
            "--overrides", "max_epochs=2 batch_size=16 image_size=75 synthetic_count=160",
        ])
    assert exit_code == 0
    return store, data
