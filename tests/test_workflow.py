"""The main entry point chains the real steps as MLflow project runs and skips unchanged ones."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from poster_ml.cli import main


@pytest.mark.slow
def test_main_runs_every_step_then_skips_them_all(tmp_path, monkeypatch, capsys):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.chdir(tmp_path)
    arguments = [
        "main",
        "--count",
        "120",
        "--data",
        str(tmp_path / "prepared"),
        "--variants",
        "basic_cnn",
        "--trials",
        "0",
        "--size",
        "48",
        "--overrides",
        "max_epochs=1 batch_size=16",
    ]
    assert main(arguments) == 0
    client = MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    steps = sorted(
        r.data.tags.get("poster_ml.step", "") for r in runs if r.info.status == "FINISHED"
    )
    assert steps == ["evaluate", "main", "preprocess", "register", "train", "train_variant"]
    # One epoch on 120 posters: gated @champion only if above chance, else @challenger.
    (version,) = client.search_model_versions("name = 'poster-ml'")
    assert version.tags["variant"] == "basic_cnn" and version.tags["ranked_by"] == "best_val_auc"
    assert version.tags["gate"] in ("champion", "challenger")
    # The version names the report of the evaluate run that came before its gate.
    (evaluate,) = [r for r in runs if r.data.tags.get("poster_ml.step") == "evaluate"]
    report = f"runs:/{evaluate.info.run_id}/report.html"
    assert version.tags["evaluation_report"] == report and report in version.description
    # Steps hand over through runs: train names the preprocess run as its dataset's source.
    (preprocess,) = [r for r in runs if r.data.tags.get("poster_ml.step") == "preprocess"]
    (train,) = [r for r in runs if r.data.tags.get("poster_ml.step") == "train"]
    uri = f"runs:/{preprocess.info.run_id}/prepared"
    assert train.data.params["data"] == uri and train.data.tags["data_uri"] == uri
    (dataset,) = [dataset_input.dataset for dataset_input in train.inputs.dataset_inputs]
    assert dataset.source_type == "poster_ml_prepared_run" and uri in dataset.source
    capsys.readouterr()

    assert main(arguments) == 0
    printed = capsys.readouterr().out
    for step in ("preprocess", "train", "evaluate", "register"):
        assert f"skipping {step}" in printed

    # Preparing the same posters at another size changes the pixels, so the dataset's
    # identity changes and main no longer trusts the finished steps.
    assert (
        main(["preprocess", "--count", "120", "--size", "40", "--out", str(tmp_path / "prepared")])
        == 0
    )
    capsys.readouterr()
    assert main(arguments) == 0
    assert "running preprocess" in capsys.readouterr().out


def test_a_top_level_mlflow_run_in_the_default_experiment_says_how_to_join_the_project(
    monkeypatch, capsys
):
    """`mlflow run . -e main` without --experiment-name after `make demo` lands in Default,
    away from the demo's runs: its top-level run says so once, its steps do not repeat it."""
    from poster_ml.tracking import store

    client = MlflowClient()
    lone = client.create_run("0")  # A store without the project's experiment: nothing to join.
    monkeypatch.setenv("MLFLOW_RUN_ID", lone.info.run_id)
    store.configure_tracking()
    assert "note:" not in capsys.readouterr().out

    project = client.create_experiment("poster-ml")
    outside = client.create_run("0")
    step = client.create_run("0", tags={"mlflow.parentRunId": outside.info.run_id})
    inside = client.create_run(project)
    for run, noted in ((outside, True), (step, False), (inside, False)):
        monkeypatch.setenv("MLFLOW_RUN_ID", run.info.run_id)
        assert store.configure_tracking() == run.info.experiment_id
        printed = capsys.readouterr().out
        assert ("--experiment-name poster-ml" in printed) == noted, printed
