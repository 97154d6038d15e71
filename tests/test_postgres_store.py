"""A team tracking store: the real steps against PostgreSQL, whose columns have length limits
that SQLite ignores (a dataset digest of at most 36 characters, for one)."""

from __future__ import annotations

import mlflow
import pytest
from helpers import POSTGRES
from mlflow.tracking import MlflowClient

from poster_ml.cli import main


@pytest.fixture
def postgres_store(postgres_database):
    return f"{POSTGRES}/{postgres_database('mlflow')}"


def test_preprocess_train_and_evaluate_against_postgresql(postgres_store, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres_store)
    monkeypatch.chdir(tmp_path)  # Artifacts go to ./mlartifacts beside a database store.
    data = str(tmp_path / "prepared")
    assert main(["preprocess", "--count", "120", "--size", "48", "--out", data]) == 0
    assert main(["train", "--profile", "quick", "--data", data, "--variants", "basic_cnn", "--trials", "0", "--overrides", "max_epochs=1"]) == 0
    assert main(["evaluate", "--bootstrap-samples", "20", "--cam-posters", "2"]) == 0
    client = MlflowClient(postgres_store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.data.tags["poster_ml.step"] for r in runs) == ["evaluate", "preprocess", "train", "train_variant"]
    variant = next(r for r in runs if r.data.tags["poster_ml.step"] == "train_variant")
    models = mlflow.search_logged_models(experiment_ids=[variant.info.experiment_id], output_format="list")
    assert [model.name for model in models] == ["basic_cnn"] and "test_roc_auc" in {metric.key for metric in models[0].metrics}
    assert len(variant.inputs.dataset_inputs[0].dataset.digest) <= 36
