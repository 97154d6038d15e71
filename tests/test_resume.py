"""Nothing lost when training is killed: the same command resumes it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from poster_ml.cli import main

ROOT = Path(__file__).resolve().parents[1]

TRAIN = [
    "train",
    "--profile",
    "quick",
    "--variants",
    "basic_cnn,regularized_cnn",
    "--trials",
    "0",
    "--overrides",
    "max_epochs=6 patience=6 lr_patience=6 batch_size=16",
]


def runs_by_name(client: MlflowClient) -> dict:
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        order_by=["attributes.start_time ASC"],
    )
    named: dict = {}
    for run in runs:
        named.setdefault(run.info.run_name, []).append(run)
    return named


def epochs_logged(client: MlflowClient, run_id: str) -> list[int]:
    return sorted(metric.step for metric in client.get_metric_history(run_id, "loss"))


@pytest.mark.slow
def test_a_killed_training_resumes_where_it_stopped(tmp_path, capsys):
    store = os.environ["MLFLOW_TRACKING_URI"]
    client = MlflowClient(store)
    assert main(["preprocess", "--count", "600", "--size", "64", "--out", "data/prepared"]) == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "poster_ml.cli", *TRAIN],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    second = None
    while (
        time.monotonic() < deadline and process.poll() is None
    ):  # Kill it in the second variant's third epoch.
        second = next(iter(runs_by_name(client).get("regularized_cnn", [])), None)
        if second is not None and len(epochs_logged(client, second.info.run_id)) >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert second is not None and epochs_logged(client, second.info.run_id) == [0, 1]
    first = runs_by_name(client)["basic_cnn"][0]
    assert first.info.status == "FINISHED"

    capsys.readouterr()
    assert main(TRAIN) == 0
    # Keras continues at the third epoch: training did not start again from the first.
    printed = capsys.readouterr().out
    resumed = printed[printed.index("regularized_cnn: resuming after epoch 2") :]
    assert "regularized_cnn: epochs 3-6 of 6 in" in resumed
    named = runs_by_name(client)
    assert (
        len(named["train"]) == 1
        and len(named["basic_cnn"]) == 1
        and len(named["regularized_cnn"]) == 1
    )
    # The first variant was not trained again; the second continued in its own run.
    assert client.get_run(first.info.run_id).data.metrics == first.data.metrics
    assert epochs_logged(client, first.info.run_id) == list(
        range(len(epochs_logged(client, first.info.run_id)))
    )
    assert epochs_logged(client, second.info.run_id) == list(
        range(6)
    )  # Each epoch once, none missing.
    assert not [run for runs in named.values() for run in runs if run.info.status == "RUNNING"]
    train = named["train"][0]
    board = client.load_table(
        train.info.experiment_id, "leaderboard.json", run_ids=[train.info.run_id]
    )
    assert sorted(board["variant"]) == ["basic_cnn", "regularized_cnn"]
    assert set(board.columns) >= {
        "variant",
        "train_accuracy",
        "val_accuracy",
        "val_auc",
        "epochs",
        "kept_epoch",
        "verdict",
        "model_uri",
        "pretrained",
    }
    assert int(board.set_index("variant").loc["regularized_cnn", "epochs"]) == 6


def kill_in_second_variant(process: subprocess.Popen, client: MlflowClient, epochs: int = 2):
    """Kills a training process group once its second variant has logged `epochs` epochs."""
    deadline = time.monotonic() + 600
    second = None
    while time.monotonic() < deadline and process.poll() is None:
        second = next(iter(runs_by_name(client).get("regularized_cnn", [])), None)
        if second is not None and len(epochs_logged(client, second.info.run_id)) >= epochs:
            break
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return second


@pytest.mark.slow
def test_a_killed_mlflow_run_is_continued_by_the_next_mlflow_run(tmp_path):
    store = os.environ["MLFLOW_TRACKING_URI"]
    client = MlflowClient(store)
    assert main(["preprocess", "--count", "600", "--size", "64", "--out", "data/prepared"]) == 0
    overrides = "max_epochs=6 patience=6 lr_patience=6 batch_size=16"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(ROOT),
        "-e",
        "train",
        "--env-manager",
        "local",
        "--experiment-name",
        "poster-ml",
        "-P",
        "profile=quick",
        "-P",
        "variants=basic_cnn,regularized_cnn",
        "-P",
        "trials=0",
        "-P",
        f"overrides={overrides}",
        "-P",
        f"data={Path('data/prepared').resolve()}",
    ]
    environment = os.environ | {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    }
    environment.pop(
        "MLFLOW_EXPERIMENT_ID", None
    )  # Set by this process's own runs; the command names the experiment.
    process = subprocess.Popen(
        command,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    second = kill_in_second_variant(process, client)
    assert second is not None and epochs_logged(client, second.info.run_id) == [0, 1]
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "continuing the interrupted train run" in finished.stdout
    named = runs_by_name(client)
    killed, continuing = named["train"]
    assert client.get_run(killed.info.run_id).info.status == "FAILED"
    assert continuing.data.tags["poster_ml.continues"] == killed.info.run_id
    # Each setting once: MLflow's own entry-point parameters, and the resolved config's others.
    assert (
        continuing.data.params["variants"] == "basic_cnn,regularized_cnn"
        and "step.variants" not in continuing.data.params
    )
    assert (
        continuing.data.params["train.max_epochs"] == "6"
        and "augment.zoom" in continuing.data.params
    )
    basic_runs, second_runs = named["basic_cnn"], named["regularized_cnn"]
    # The finished variant is linked, not trained again; the interrupted one goes on from
    # its last epoch in the new train run, which holds every epoch once.
    assert basic_runs[1].data.tags["reused_from"] == basic_runs[0].info.run_id
    assert basic_runs[1].data.tags["model_uri"] == basic_runs[0].data.tags["model_uri"]
    assert "regularized_cnn: epochs 3-6 of 6 in" in finished.stdout
    assert (
        second_runs[1].data.tags["mlflow.parentRunId"] == continuing.info.run_id
        and second_runs[1].data.tags["poster_ml.continues"] == second_runs[0].info.run_id
    )
    assert epochs_logged(client, second_runs[1].info.run_id) == list(range(6))
    assert not [run for runs in named.values() for run in runs if run.info.status == "RUNNING"]


@pytest.mark.slow
def test_restart_starts_afresh_and_a_dead_run_is_marked_failed(tmp_path):
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    assert main(["preprocess", "--count", "200", "--size", "40", "--out", "data/prepared"]) == 0
    small = [
        "train",
        "--profile",
        "quick",
        "--variants",
        "basic_cnn",
        "--trials",
        "0",
        "--overrides",
        "max_epochs=30 patience=30",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "poster_ml.cli", *small],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and "basic_cnn" not in runs_by_name(client):
        time.sleep(0.1)
    time.sleep(1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert main([*small, "--restart", "true"]) == 0  # The same settings, but afresh.
    named = runs_by_name(client)
    assert len(named["train"]) == 2
    dead_train = named["train"][0]
    assert client.get_run(dead_train.info.run_id).info.status == "FAILED"
    assert client.get_run(named["basic_cnn"][0].info.run_id).info.status == "FAILED"


def test_an_interrupted_evaluation_resumes_without_evaluating_finished_models_again(
    trained_store, monkeypatch, capsys
):
    store, _ = trained_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    from poster_ml.evaluation import model as evaluation

    real = evaluation.evaluate_model
    calls = []

    def dies_on_the_second(model, *arguments, **keywords):
        calls.append(model.name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # As a Ctrl-C or a kill would stop it.
        return real(model, *arguments, **keywords)

    monkeypatch.setattr(evaluation, "evaluate_model", dies_on_the_second)
    client = MlflowClient(store)
    before = {
        run.info.run_id
        for run in client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            "tags.`poster_ml.step` = 'evaluate'",
        )
    }
    arguments = [
        "evaluate",
        "--bootstrap-samples",
        "20",
        "--cam-posters",
        "2",
        "--faithfulness-posters",
        "2",  # What resumes is the same with fewer posters, and VGG16's passes cost less.
        "--activations-variant",
        "none",
    ]
    with contextlib.suppress(KeyboardInterrupt):
        main(arguments)
    capsys.readouterr()
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert (
        f"{calls[0]} evaluated before the interruption" in printed
        and "resuming the interrupted evaluate run" in printed
    )
    assert calls.count(calls[0]) == 1 and len(calls) == 3
    evaluations = [
        run
        for run in client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            "tags.`poster_ml.step` = 'evaluate'",
        )
        if run.info.run_id not in before
    ]
    assert (
        len(evaluations) == 1 and evaluations[0].info.status == "FINISHED"
    )  # One run, resumed and finished.
