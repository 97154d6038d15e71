"""A user iterating: prepare, train, change a setting, train, prepare more posters, train,
evaluate and register after each, kill a tuning worker and run it again. After every
step the MLflow and Optuna state is checked: which runs hang under which parent, which
models are linked where, which studies exist, where the aliases point, nothing RUNNING."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient

from poster_ml.cli import main
from poster_ml.models import tuning

pytestmark = pytest.mark.slow

SMALL = "batch_size=16 patience=2"


def train(capsys, overrides: str = "max_epochs=2", trials: int = 2) -> str:
    """Runs the train step in this process and returns what it printed."""
    capsys.readouterr()
    assert (
        main(
            [
                "train",
                "--data",
                "p",
                "--profile",
                "quick",
                "--variants",
                "basic_cnn",
                "--trials",
                str(trials),
                "--overrides",
                f"{SMALL} {overrides}",
            ]
        )
        == 0
    )
    return capsys.readouterr().out


def evaluate_and_register() -> None:
    assert (
        main(
            [
                "evaluate",
                "--bootstrap-samples",
                "20",
                "--cam-posters",
                "2",
                "--activations-variant",
                "none",
            ]
        )
        == 0
    )
    assert main(["register", "--allow-cpu", "true", "--bootstrap-samples", "50"]) == 0


class Store:
    """The tracking store and the study storage as a test reads them."""

    def __init__(self):
        self.client = MlflowClient()

    def runs(self, step: str | None = None) -> list:
        runs = self.client.search_runs(
            [e.experiment_id for e in self.client.search_experiments()],
            order_by=["attributes.start_time ASC"],
        )
        return [run for run in runs if step is None or run.data.tags.get("poster_ml.step") == step]

    def children(self, run) -> list:
        return [
            child
            for child in self.runs()
            if child.data.tags.get("mlflow.parentRunId") == run.info.run_id
        ]

    def studies(self) -> dict[str, optuna.Study]:
        storage = tuning.default_storage()
        return {
            name: optuna.load_study(study_name=name, storage=storage)
            for name in optuna.get_all_study_names(storage)
        }

    def check_invariants(self) -> None:
        """What holds after every step of a session."""
        runs = self.runs()
        assert [run.info.run_name for run in runs if run.info.status == "RUNNING"] == []
        by_id = {run.info.run_id: run for run in runs}
        for run in runs:
            parent = by_id.get(run.data.tags.get("mlflow.parentRunId", ""))
            step = run.data.tags.get("poster_ml.step")
            if step == "train_variant":
                assert parent is not None and parent.data.tags["poster_ml.step"] == "train"
            if step == "trial":
                assert parent is not None and parent.data.tags["poster_ml.step"] == "train_variant"
        for train_run in self.runs("train"):
            if train_run.info.status == "FINISHED":
                variants = [
                    child for child in self.children(train_run) if child.info.status == "FINISHED"
                ]
                assert [run.data.tags["variant"] for run in variants] == ["basic_cnn"], (
                    train_run.info.run_id
                )
                assert "model_uri" in variants[0].data.tags
        versions = self.client.search_model_versions("name = 'poster-ml'")
        assert all(
            {"gate", "test_auc"} <= set(version.tags) and version.description
            for version in versions
        )

    def variant_of(self, train_run):
        (variant,) = self.children(train_run)
        return variant

    def best_trial_model(self, variant_run) -> str:
        """The model that the study's best trial kept."""
        study = self.studies()[variant_run.data.tags["optuna_study"]]
        return study.best_trial.user_attrs[tuning.MODEL_ATTRIBUTE]


def test_a_user_session_of_reruns_leaves_every_run_study_and_alias_right(tmp_path, capsys):
    store = Store()
    assert main(["preprocess", "--count", "200", "--size", "32", "--out", "p"]) == 0

    # First training: one train run, its variant run, two trials under it, one study.
    train(capsys)
    evaluate_and_register()
    store.check_invariants()
    (first,) = store.runs("train")
    first_variant = store.variant_of(first)
    assert [run.info.run_name for run in store.children(first_variant)] == ["trial-0", "trial-1"]
    assert first_variant.data.tags["model_uri"] == store.best_trial_model(first_variant)
    assert "retrained" not in first_variant.data.tags
    assert store.runs("evaluate")[-1].data.tags["train_run_id"] == first.info.run_id
    assert len(store.studies()) == 1

    # A changed setting: a new study, a new train run with its own variant run; the first
    # train run is left as it was.
    printed = train(capsys, "max_epochs=1")
    assert "since settings differ from study" in printed and "train.max_epochs: 2 -> 1" in printed
    evaluate_and_register()
    store.check_invariants()
    first_again, second = store.runs("train")
    assert store.variant_of(first_again).info.run_id == first_variant.info.run_id
    assert (
        store.variant_of(first_again).data.tags["model_uri"] == first_variant.data.tags["model_uri"]
    )
    second_variant = store.variant_of(second)
    assert second_variant.data.tags["optuna_study"] != first_variant.data.tags["optuna_study"]
    assert store.runs("evaluate")[-1].data.tags["train_run_id"] == second.info.run_id
    assert store.runs("register")[-1].data.tags["registered_version"] == "2"
    assert len(store.studies()) == 2

    # The first settings again with a larger budget: the same study gets one more trial,
    # and the new train run's variant links the study's best trial's own model.
    printed = train(capsys, "max_epochs=2", trials=3)
    assert f"resuming study {first_variant.data.tags['optuna_study']}" in printed
    evaluate_and_register()
    store.check_invariants()
    third = store.runs("train")[-1]
    third_variant = store.variant_of(third)
    assert third_variant.data.tags["optuna_study"] == first_variant.data.tags["optuna_study"]
    assert [run.info.run_name for run in store.children(third_variant)] == ["trial-2"]
    study = store.studies()[first_variant.data.tags["optuna_study"]]
    assert len(study.get_trials(states=tuning.FINISHED)) == 3
    assert (
        third_variant.data.tags["model_uri"] == study.best_trial.user_attrs[tuning.MODEL_ATTRIBUTE]
    )
    assert (
        third_variant.data.tags["best_trial_run"]
        == study.best_trial.user_attrs[tuning.TRIAL_RUN_ATTRIBUTE]
    )
    assert store.runs("evaluate")[-1].data.tags["train_run_id"] == third.info.run_id

    # More posters in the same folder: a new dataset digest, so a new study.
    assert main(["preprocess", "--count", "260", "--size", "32", "--out", "p"]) == 0
    printed = train(capsys)
    assert "dataset_digest:" in printed
    evaluate_and_register()
    store.check_invariants()
    assert len(store.studies()) == 3
    latest = store.client.get_model_version(
        "poster-ml", store.runs("register")[-1].data.tags["registered_version"]
    )
    assert (
        latest.tags["dataset_digest"]
        == store.variant_of(store.runs("train")[-1]).data.tags["dataset_digest"]
    )

    # A tuning worker killed in its second trial, then the same command again.
    command = [
        sys.executable,
        "-m",
        "poster_ml.cli",
        "train",
        "--data",
        "p",
        "--profile",
        "quick",
        "--variants",
        "basic_cnn",
        "--trials",
        "3",
        "--overrides",
        f"{SMALL} max_epochs=6 patience=6",
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if any(
            run.info.run_name == "trial-1"
            for run in store.runs("trial")
            if run.info.status == "RUNNING"
        ):
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed = store.runs("train")[-1]
    killed_trial = next(
        run
        for run in store.runs("trial")
        if run.info.run_name == "trial-1"
        and run.data.tags["optuna_study"]
        not in {first_variant.data.tags["optuna_study"], second_variant.data.tags["optuna_study"]}
        and run.info.status == "RUNNING"
    )
    capsys.readouterr()
    assert main(command[3:]) == 0
    printed = capsys.readouterr().out
    assert (
        "resuming the interrupted train run" in printed
        and "left running by a dead worker" in printed
    )
    store.check_invariants()
    assert store.client.get_run(killed_trial.info.run_id).info.status == "FAILED"
    resumed = store.runs("train")[-1]
    assert resumed.info.run_id == killed.info.run_id  # poster-ml resumes the killed run itself.
    study = store.studies()[killed_trial.data.tags["optuna_study"]]
    states = [trial.state for trial in study.trials]
    assert (
        len(study.get_trials(states=tuning.FINISHED)) == 3
        and states.count(optuna.trial.TrialState.FAIL) == 1
    )
    evaluate_and_register()
    store.check_invariants()
