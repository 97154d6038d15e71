"""A team tracking store: the real steps against PostgreSQL, whose columns have length limits
that SQLite ignores (a dataset digest of at most 36 characters, for one)."""

from __future__ import annotations

import threading

import mlflow
import pytest
from helpers import POSTGRES
from mlflow.tracking import MlflowClient

from poster_ml.cli import main
from poster_ml.tracking import datasets


@pytest.fixture
def postgres_store(postgres_database):
    return f"{POSTGRES}/{postgres_database('mlflow')}"


def test_preprocess_train_and_evaluate_against_postgresql(postgres_store, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres_store)
    monkeypatch.chdir(tmp_path)  # Artifacts go to ./mlartifacts beside a database store.
    data = str(tmp_path / "prepared")
    assert main(["preprocess", "--count", "120", "--size", "48", "--out", data]) == 0
    assert (
        main(
            [
                "train",
                "--profile",
                "quick",
                "--data",
                data,
                "--variants",
                "basic_cnn",
                "--trials",
                "0",
                "--overrides",
                "max_epochs=1",
            ]
        )
        == 0
    )
    assert main(["evaluate", "--bootstrap-samples", "20", "--cam-posters", "2"]) == 0
    client = MlflowClient(postgres_store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.data.tags["poster_ml.step"] for r in runs) == [
        "evaluate",
        "preprocess",
        "train",
        "train_variant",
    ]
    variant = next(r for r in runs if r.data.tags["poster_ml.step"] == "train_variant")
    models = mlflow.search_logged_models(
        experiment_ids=[variant.info.experiment_id], output_format="list"
    )
    assert [model.name for model in models] == ["basic_cnn"] and "test_roc_auc" in {
        metric.key for metric in models[0].metrics
    }
    assert len(variant.inputs.dataset_inputs[0].dataset.digest) <= 36


def test_two_workers_logging_one_new_dataset_at_once_both_succeed(
    postgres_store, synthetic_dataset, monkeypatch
):
    # MLflow's store looks for a dataset and then inserts it, so two workers starting on one
    # new dataset race on its unique key (a parallel tuning study hit this in CI). Each round
    # uses a new experiment, so the dataset is new to it again.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", postgres_store)
    mlflow.set_tracking_uri(postgres_store)
    client, errors = MlflowClient(postgres_store), []

    def worker(experiment_id: str, barrier: threading.Barrier) -> None:
        with mlflow.start_run(experiment_id=experiment_id):
            barrier.wait()
            try:
                datasets.dataset_input(synthetic_dataset, context="training")
            except Exception as error:  # noqa: BLE001 - collected, the assertion shows it.
                errors.append(error)

    for round_number in range(5):
        experiment_id, barrier = (
            client.create_experiment(f"race-{round_number}"),
            threading.Barrier(2),
        )
        threads = [threading.Thread(target=worker, args=(experiment_id, barrier)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        runs = client.search_runs([experiment_id])
        assert [len(run.inputs.dataset_inputs) for run in runs] == [1, 1]
    assert errors == []
