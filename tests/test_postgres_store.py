"""A team tracking store: the real steps against PostgreSQL, whose columns have length limits
that SQLite ignores (a dataset digest of at most 36 characters, for one)."""

from __future__ import annotations

import uuid

import pytest
from mlflow.tracking import MlflowClient

from poster_ml.cli import main

psycopg = pytest.importorskip("psycopg")
SERVER = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture
def postgres_store():
    """A database of its own on the local PostgreSQL server, dropped afterwards."""
    name = f"poster_ml_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(f"{SERVER}/test", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.skip(f"no PostgreSQL server on 127.0.0.1:5432: {error}")
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{SERVER}/{name}"
    finally:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


def test_preprocess_train_and_evaluate_against_postgresql(postgres_store, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres_store)
    monkeypatch.chdir(tmp_path)  # Artifacts go to ./mlartifacts beside a database store.
    data = str(tmp_path / "prepared")
    assert main(["preprocess", "--count", "120", "--size", "48", "--out", data]) == 0
    assert main(["train", "--profile", "quick", "--data", data, "--variants", "basic_cnn", "--overrides", "max_epochs=1"]) == 0
    assert main(["evaluate", "--bootstrap-samples", "20", "--cam-posters", "2"]) == 0
    client = MlflowClient(postgres_store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.data.tags["poster_ml.step"] for r in runs) == ["evaluate", "preprocess", "train", "train_variant"]
    variant = next(r for r in runs if r.data.tags["poster_ml.step"] == "train_variant")
    assert "test_roc_auc" in variant.data.metrics
    assert len(variant.inputs.dataset_inputs[0].dataset.digest) <= 36
