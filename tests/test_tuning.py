"""Tuning: the search space, seeded suggestions, trials as nested runs, pruning and
failure in MLflow, one SQLite worker, several PostgreSQL workers, a killed worker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import mlflow
import numpy as np
import optuna
import pytest
import sqlalchemy.exc
from helpers import POSTGRES, prepare_tiny
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from poster_ml.cli import main
from poster_ml.data.prepared import load_prepared
from poster_ml.models import studies, tuning
from poster_ml.models.predict import predict_probabilities
from poster_ml.models.variants import VARIANTS
from poster_ml.tracking import logged_models
from poster_ml.tracking.runs import trial_run

TINY = [
    "--variants",
    "basic_cnn",
    "--overrides",
    "max_epochs=2 batch_size=16",
]


def suggested(seed: int, count: int) -> list[dict]:
    study, _ = studies.open_study(
        "seeded",
        optuna.storages.InMemoryStorage(),
        seed,
        "none",
        VARIANTS["vgg16_finetune_aug"],
        {},
    )
    study.optimize(
        lambda trial: sum(tuning.search_space(trial, VARIANTS["vgg16_finetune_aug"]).values()),
        n_trials=count,
    )
    return [trial.params for trial in study.trials]


def test_a_seeded_study_suggests_the_same_sequence_and_starts_from_the_study_values():
    first, again, other = suggested(7, 5), suggested(7, 5), suggested(8, 5)
    assert first == again and first[1:] != other[1:]
    assert first[0] == {"dropout": 0.3, "learning_rate": 1e-6, "unfreeze_blocks": 2}
    assert all(
        0 <= params["dropout"] <= 0.6
        and 1e-7 <= params["learning_rate"] <= 1e-5
        and 0 <= params["unfreeze_blocks"] <= 4
        for params in first
    )


def test_a_new_study_is_compared_with_the_latest_of_its_own_experiment():
    storage = optuna.storages.InMemoryStorage()
    demo, changed = {"train": {"max_epochs": 4}}, {"train": {"max_epochs": 3}}

    def opening(experiment: str, settings: dict) -> str:
        name = studies.study_name(experiment, "basic_cnn", settings)
        study, created = studies.open_study(
            name, storage, 42, "none", VARIANTS["basic_cnn"], settings
        )
        line = studies.opening_line(study, created, storage, settings)
        if experiment == "Default":
            study.optimize(lambda trial: 0.5, n_trials=1)  # Newer than the project's study.
        return line

    first = studies.study_name("poster-ml", "basic_cnn", demo)
    assert opening("poster-ml", demo) == f"basic_cnn: new study {first}"
    # The same settings in another experiment: a new study, never "settings differ" with no
    # difference to show.
    assert opening("Default", demo).endswith(
        f"with the same settings as study {first} under another name (another experiment, or --study-name)"
    )
    assert opening("Default", changed).endswith("train.max_epochs: 4 -> 3")
    # A change within the project's experiment is told against that experiment's study,
    # even when another experiment's is newer.
    line = opening("poster-ml", changed)
    assert f"since settings differ from study {first}: train.max_epochs: 4 -> 3" in line
    assert opening("poster-ml", changed).startswith("basic_cnn: resuming study")


def test_the_search_space_tunes_unfreezing_only_where_a_base_is_fine_tuned():
    study = optuna.create_study()
    for name, expected in (
        ("basic_cnn", {"dropout", "learning_rate"}),
        ("vgg16_features", {"dropout", "learning_rate"}),
        ("inception_v3_finetune_aug", {"dropout", "learning_rate", "unfreeze_blocks"}),
    ):
        assert set(tuning.search_space(study.ask(), VARIANTS[name])) == expected


def test_pruned_and_failed_trials_end_their_runs_killed_and_failed():
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.set_experiment("poster-ml")
    study = optuna.create_study()
    with mlflow.start_run(run_name="variant") as variant:

        def objective(trial):
            with trial_run(trial, variant.info.run_id, {"dropout": 0.1}):
                if trial.number == 0:
                    raise optuna.TrialPruned()
                raise RuntimeError("the loss became NaN\nsecond line")

        study.optimize(objective, n_trials=2, catch=(RuntimeError,))
    client = MlflowClient()
    runs = {
        run.info.run_name: run
        for run in client.search_runs([variant.info.experiment_id])
        if run.info.run_name.startswith("trial")
    }
    assert runs["trial-0"].info.status == "KILLED" and runs["trial-0"].data.tags["pruned"] == "true"
    assert (
        runs["trial-1"].info.status == "FAILED"
        and runs["trial-1"].data.tags["failure_reason"] == "the loss became NaN"
    )
    assert study.trials[0].user_attrs[tuning.TRIAL_RUN_ATTRIBUTE] == runs["trial-0"].info.run_id
    assert runs["trial-1"].data.tags["mlflow.parentRunId"] == variant.info.run_id


def test_train_with_trials_logs_each_trial_under_its_variant_run(tmp_path):
    prepare_tiny()
    assert (
        main(["train", "--profile", "quick", "--trials", "3", *TINY]) == 0
    )  # The default data folder.
    client = MlflowClient()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    variant = next(run for run in runs if run.data.tags.get("poster_ml.step") == "train_variant")
    trial_runs = [
        run for run in runs if run.data.tags.get("mlflow.parentRunId") == variant.info.run_id
    ]
    assert sorted(run.info.run_name for run in trial_runs) == ["trial-0", "trial-1", "trial-2"]
    for run in trial_runs:
        assert {"dropout", "learning_rate"} <= set(
            run.data.params
        ) and "val_auc" in run.data.metrics, (run.info.status, run.data.tags, run.data.metrics)
        assert run.info.status == "KILLED" or "objective_val_auc" in run.data.metrics
    assert "best.dropout" in variant.data.params and "model_uri" in variant.data.tags
    study = optuna.load_study(
        study_name=variant.data.params["optuna_study"], storage=tuning.default_storage()
    )
    assert variant.data.tags["study_settings_hash"] == study.user_attrs[
        "settings_hash"
    ] and study.study_name.endswith(study.user_attrs["settings_hash"])
    # The variant's model is the best trial's own: it scores the best trial's validation
    # AUC (a retraining would give other weights without op determinism).
    assert (
        variant.data.tags["best_trial_run"]
        == study.best_trial.user_attrs[tuning.TRIAL_RUN_ATTRIBUTE]
        and "retrained" not in variant.data.tags
    )
    data = load_prepared("data/prepared")
    probabilities = predict_probabilities(
        logged_models.load_poster_model(variant.data.tags["model_uri"])[0],
        data.reader("validation").read(np.arange(len(data.split("validation")))),
    )
    # The objective is the exact AUC (scikit-learn) of those answers, not Keras's estimate.
    exact = roc_auc_score(data.labels("validation"), probabilities)
    assert exact == pytest.approx(study.best_value, abs=1e-6)
    assert variant.data.metrics["best_val_auc"] == pytest.approx(exact, abs=1e-6)
    # Running again resumes the study: it already has its three trials.
    assert main(["train", "--profile", "quick", "--trials", "3", *TINY]) == 0
    assert (
        len(optuna.load_study(study_name=study.study_name, storage=tuning.default_storage()).trials)
        == 3
    )


def test_a_variant_too_large_for_the_posters_is_refused_before_any_work(tmp_path, capsys):
    assert main(["preprocess", "--count", "60", "--size", "32", "--out", "small"]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "train",
                "--data",
                "small",
                "--profile",
                "quick",
                "--variants",
                "basic_cnn,regularized_cnn",
                "--trials",
                "2",
            ]
        )
        == 1
    )
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert (
        len(errors) == 1
        and "regularized_cnn needs at least 46 px" in errors[0]
        and "basic_cnn" not in errors[0]
    )
    assert optuna.get_all_study_names(tuning.default_storage()) == []


def test_a_study_whose_trials_all_failed_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    from poster_ml.models import fit

    def fails(*arguments, **keywords):
        raise RuntimeError("the loss became NaN")

    monkeypatch.setattr(fit, "train_variant", fails)
    prepare_tiny()
    assert main(["train", "--profile", "quick", "--trials", "2", *TINY]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert (
        len(errors) == 1
        and "every trial of study" in errors[0]
        and "RuntimeError: the loss became NaN" in errors[0]
    )


def test_a_second_worker_on_one_sqlite_study_is_refused_with_the_alternatives(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    prepare_tiny()
    with tuning.single_worker_lock(storage):
        assert (
            main(["train", "--profile", "quick", "--trials", "2", "--storage", storage, *TINY]) == 1
        )
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "another worker" in error and "journal:PATH" in error and "postgresql+psycopg" in error


def worker(
    tmp_path, storage: str, tracking: str, trials_count: int, heartbeat: int = 60
) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "poster_ml.cli",
        "train",
        "--profile",
        "quick",
        "--data",
        str(tmp_path / "data"),
        "--trials",
        str(trials_count),
        "--storage",
        storage,
        "--study-name",
        "shared",
        "--heartbeat",
        str(heartbeat),
        *TINY,
    ]
    return subprocess.Popen(
        command,
        cwd=tmp_path,
        env=os.environ | {"MLFLOW_TRACKING_URI": tracking},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def open_storage_together(url: str, barrier, answers) -> None:
    """One worker's start: wait for the others, then open the studies storage."""
    barrier.wait(timeout=60)
    try:
        tuning.make_storage(url, 60)
        answers.put("opened")
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as error:
        answers.put(f"{type(error).__name__}: {str(error).splitlines()[0]}")


def test_workers_opening_a_fresh_postgresql_study_storage_at_once_take_turns(postgres_database):
    """Optuna creates its tables on first use; six workers doing it at the same instant on
    an empty database collide (a duplicate `alembic_version`) unless they take turns."""
    import multiprocessing

    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{postgres_database('optuna')}"
    context = multiprocessing.get_context("fork")
    barrier, answers = context.Barrier(6), context.Queue()
    workers = [
        context.Process(target=open_storage_together, args=(url, barrier, answers))
        for _ in range(6)
    ]
    for process in workers:
        process.start()
    results = [answers.get(timeout=120) for _ in workers]
    for process in workers:
        process.join(timeout=60)
    assert results == ["opened"] * 6, results
    assert optuna.storages.RDBStorage(url).get_all_studies() == []


@pytest.mark.parametrize(
    "url, reason",
    [
        ("postgresql+psycopg://nobody_here@127.0.0.1:5432/test", 'role "nobody_here"'),
        ("postgresql+psycopg://postgres@127.0.0.1:5432/no_such_database", "no_such_database"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/test", "127.0.0.1"),
    ],
)
def test_a_study_storage_that_cannot_be_opened_is_one_line_naming_it(
    url, reason, tmp_path, capsys, monkeypatch, postgres_database
):
    postgres_database("reachable")  # Skips on a laptop without PostgreSQL, fails under CI.
    monkeypatch.chdir(tmp_path)
    prepare_tiny()
    code = main(["train", *TINY, "--trials", "1", "--storage", url])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1
    assert error.startswith(f"poster-ml train: error: cannot open the studies database {url}")
    assert reason in error and "tracking store" not in error


@pytest.mark.slow
def test_two_postgresql_workers_finish_exactly_n_trials_between_them(tmp_path, postgres_database):
    storage = f"postgresql+psycopg://postgres@127.0.0.1:5432/{postgres_database('optuna')}"
    tracking = f"{POSTGRES}/{postgres_database('mlflow')}"
    # As an operator would: the stores exist before the workers start (their schemas, the
    # experiment), and the data is prepared once.
    optuna.storages.RDBStorage(storage)
    MlflowClient(tracking).create_experiment("poster-ml")
    assert (
        main(["preprocess", "--count", "120", "--size", "40", "--out", str(tmp_path / "data")]) == 0
    )
    workers = [worker(tmp_path, storage, tracking, trials_count=5) for _ in range(2)]
    outputs = [process.communicate(timeout=600)[0] for process in workers]
    assert [process.returncode for process in workers] == [0, 0], outputs
    assert not any("database is locked" in output or "Traceback" in output for output in outputs)
    study = optuna.load_study(study_name="shared", storage=storage)
    assert len(study.get_trials(states=tuning.FINISHED)) == 5
    client = MlflowClient(tracking)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    trial_runs = [
        run
        for run in runs
        if run.data.tags.get("poster_ml.step") == "trial"
        and run.info.status in ("FINISHED", "KILLED")
    ]
    assert len(trial_runs) == 5 and not [run for run in runs if run.info.status == "RUNNING"]
    # Each worker's train run owns its variant run, and both link the study's best trial's model.
    train_runs = [run for run in runs if run.data.tags.get("poster_ml.step") == "train"]
    variants = [run for run in runs if run.data.tags.get("poster_ml.step") == "train_variant"]
    assert len(train_runs) == 2 and sorted(
        run.data.tags["mlflow.parentRunId"] for run in variants
    ) == sorted(run.info.run_id for run in train_runs)
    assert {run.data.tags["model_uri"] for run in variants} == {
        study.best_trial.user_attrs[tuning.MODEL_ATTRIBUTE]
    }
    # Evaluate and register work on either worker's train run, and on the latest.
    os.environ["MLFLOW_TRACKING_URI"] = tracking
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
    assert (
        main(
            [
                "register",
                "--train-run",
                train_runs[0].info.run_id,
                "--allow-cpu",
                "true",
                "--bootstrap-samples",
                "20",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "register",
                "--train-run",
                train_runs[1].info.run_id,
                "--allow-cpu",
                "true",
                "--bootstrap-samples",
                "20",
            ]
        )
        == 0
    )
    assert len(client.search_model_versions("name = 'poster-ml'")) == 1  # One model: one version.


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_killed_worker_s_trial_is_failed_and_retried_and_the_study_resumes_to_n(tmp_path, kind):
    # SQLite: the single-worker lock says every running trial is orphaned. The journal has
    # no heartbeat: the trial's host and process id say its worker is gone.
    storage = (
        f"sqlite:///{tmp_path / 'optuna.db'}"
        if kind == "sqlite"
        else f"journal:{tmp_path / 'optuna.journal'}"
    )
    tracking = os.environ["MLFLOW_TRACKING_URI"]
    assert (
        main(["preprocess", "--count", "120", "--size", "40", "--out", str(tmp_path / "data")]) == 0
    )
    process = worker(tmp_path, storage, tracking, trials_count=3, heartbeat=1)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # Kill it in the middle of its second trial.
        try:
            study = optuna.load_study(study_name="shared", storage=tuning.make_storage(storage, 1))
            if any(
                t.state == optuna.trial.TrialState.RUNNING
                and t.number == 1
                and tuning.TRIAL_RUN_ATTRIBUTE in t.user_attrs
                for t in study.trials
            ):
                break
        except KeyError:
            pass  # The study does not exist yet.
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = worker(tmp_path, storage, tracking, trials_count=3, heartbeat=1)
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0, output
    study = optuna.load_study(study_name="shared", storage=tuning.make_storage(storage, 1))
    states = [trial.state for trial in study.trials]
    assert (
        states.count(optuna.trial.TrialState.FAIL) == 1
        and len(study.get_trials(states=tuning.FINISHED)) == 3
    )
    retried = [
        trial
        for trial in study.trials
        if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(trial) == 1
    ]
    assert len(retried) == 1 and retried[0].state in tuning.FINISHED
    # The killed trial's MLflow run (a grandchild of the dead train run) ended FAILED too.
    client = MlflowClient(tracking)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    killed = client.get_run(
        next(
            trial for trial in study.trials if trial.state == optuna.trial.TrialState.FAIL
        ).user_attrs[tuning.TRIAL_RUN_ATTRIBUTE]
    )
    assert killed.info.status == "FAILED" and not [
        run.info.run_name for run in runs if run.info.status == "RUNNING"
    ]


def test_a_running_trial_is_judged_by_its_recorded_process_or_by_its_age_without_one():
    """The killed-worker test's flake on a loaded machine: the worker died after the trial
    recorded its MLflow run but before its host and process id, so no later start could
    judge it. The process is now recorded first, and a trial without one is judged by age."""
    study = optuna.create_study()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = study.ask()
    live.set_user_attr(tuning.HOST_ATTRIBUTE, tuning.HOST)
    live.set_user_attr(tuning.PID_ATTRIBUTE, os.getpid())
    killed = study.ask()
    killed.set_user_attr(tuning.HOST_ATTRIBUTE, tuning.HOST)
    killed.set_user_attr(tuning.PID_ATTRIBUTE, dead.pid)
    elsewhere = study.ask()
    elsewhere.set_user_attr(tuning.HOST_ATTRIBUTE, "another-host")
    elsewhere.set_user_attr(tuning.PID_ATTRIBUTE, dead.pid)
    unrecorded = study.ask()
    assert tuning.fail_dead_trials(study, grace_seconds=3600) == 1
    time.sleep(0.01)
    assert tuning.fail_dead_trials(study, grace_seconds=0) == 1
    states = {trial.number: trial.state for trial in study.get_trials(deepcopy=False)}
    running, failed = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL
    assert [states[t.number] for t in (live, killed, elsewhere, unrecorded)] == [
        running,
        failed,
        running,
        failed,
    ]


def test_a_trial_records_its_process_before_its_run(monkeypatch):
    """Whatever moment a worker is killed at, a trial that names its MLflow run names its
    process too."""
    written: list[str] = []
    study = optuna.create_study()
    trial = study.ask()
    original = trial.set_user_attr
    monkeypatch.setattr(trial, "set_user_attr", lambda k, v: (written.append(k), original(k, v)))
    with mlflow.start_run():
        variant_run = mlflow.active_run().info.run_id
        with trial_run(trial, variant_run, {"dropout": 0.1}):
            pass
    assert written[:3] == [tuning.HOST_ATTRIBUTE, tuning.PID_ATTRIBUTE, tuning.TRIAL_RUN_ATTRIBUTE]


def test_trials_leave_no_traced_graphs_behind():
    # TensorFlow keeps every graph that tf.custom_gradient traced unless the trial's
    # registrations are released; without that, 18 graphs a trial (about 15 MiB) pile up.
    import gc

    import keras
    import numpy as np
    from tensorflow.python.framework.func_graph import FuncGraph

    images, labels = np.random.default_rng(0).random((32, 16, 16, 3), "float32"), np.arange(32) % 2

    def objective(trial) -> float:
        graphs_at_start.append(sum(isinstance(item, FuncGraph) for item in gc.get_objects()))
        inputs = keras.Input((16, 16, 3))
        features = keras.layers.GlobalAveragePooling2D()(
            keras.layers.Conv2D(4, 3, activation="relu")(inputs)
        )
        model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(features))
        model.compile("adam", "binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])
        history = model.fit(
            images, labels, validation_data=(images, labels), epochs=1, batch_size=16, verbose=0
        )
        return float(history.history["val_auc"][-1])

    graphs_at_start: list[int] = []
    tuning.run_trials(optuna.create_study(direction="maximize"), 4, objective)
    assert (
        len(graphs_at_start) == 4 and graphs_at_start[1] == graphs_at_start[2] == graphs_at_start[3]
    ), graphs_at_start


def test_tensorflow_s_gradient_registry_is_where_the_memory_release_looks():
    # A private TensorFlow name: if a release moves it, this fails instead of the trials'
    # memory growing again unnoticed.
    from poster_ml.models.session import CUSTOM_GRADIENT_PREFIX, gradient_registry

    registry = gradient_registry()
    assert isinstance(registry, dict) and registry
    import tensorflow as tf

    @tf.custom_gradient
    def identity(x):
        return tf.identity(x), lambda upstream: upstream

    before = set(registry)
    tf.function(lambda x: identity(x)).get_concrete_function(tf.TensorSpec([1]))
    assert any(name.startswith(CUSTOM_GRADIENT_PREFIX) for name in set(registry) - before)


def test_a_loss_that_turns_non_finite_stops_the_training_with_its_reason():
    import keras

    from poster_ml.models.progress import DivergenceGuard

    rng = np.random.default_rng(0)
    images, labels = rng.random((64, 8)).astype("float32") * 1e3, np.arange(64) % 2
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(keras.optimizers.SGD(1e12), "mean_squared_error")
    guard = DivergenceGuard()
    history = model.fit(images, labels, epochs=20, batch_size=8, callbacks=[guard], verbose=0)
    assert re.match(r"the training loss became (nan|inf) in epoch 1", guard.reason)
    assert len(history.history["loss"]) == 1  # Stopped in its first epoch, not after 20.
    calm = DivergenceGuard()
    calm.set_model(model)
    for epoch, loss in enumerate([0.69, 0.6, 6.8]):
        calm.on_epoch_end(epoch, {"loss": loss})
    assert calm.reason == ""
    calm.on_epoch_end(3, {"loss": 7.0})
    assert "reached 7 in epoch 4, over 10 times the first epoch's 0.69" in calm.reason


def test_a_diverged_trial_is_pruned_tagged_and_counted_on_the_leaderboard(monkeypatch, capsys):
    """The guard's threshold lowered to half the first epoch's loss, so that a trial whose
    loss does not halve at once counts as diverged and stops after its second epoch."""
    from poster_ml.models import progress

    monkeypatch.setattr(progress, "DIVERGENCE_FACTOR", 0.5)
    prepare_tiny()
    arguments = ["train", "--variants", "basic_cnn", "--trials", "2"]
    arguments += ["--overrides", "max_epochs=4 batch_size=16 pruner=none"]
    code = main(arguments)
    printed = capsys.readouterr()
    client = MlflowClient()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    trial_runs = [run for run in runs if run.data.tags.get("poster_ml.step") == "trial"]
    diverged = [run for run in trial_runs if "diverged" in run.data.tags]
    if code == 0:  # Some trial did not diverge: it is the variant's model.
        assert len(diverged) < len(trial_runs)
    else:  # Every trial diverged: no model, one line that says so.
        assert "every trial of study" in printed.err
    assert diverged, printed.out
    for run in diverged:
        assert run.data.tags["pruned"] == "true" and run.info.status == "KILLED"
        assert "over 0.5 times the first epoch's" in run.data.tags["diverged"]
    study = optuna.load_study(
        study_name=next(iter(trial_runs)).data.tags["optuna_study"],
        storage=tuning.default_storage(),
    )
    states = [trial.state for trial in study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == len(diverged)
    assert "pruned, diverged: the training loss reached" in printed.out
    if code == 0:
        (train,) = [run for run in runs if run.data.tags.get("poster_ml.step") == "train"]
        board = mlflow.artifacts.load_text(f"runs:/{train.info.run_id}/leaderboard.md")
        assert f"{len(diverged)} of 2 trials stopped" in board


def test_tpe_models_after_a_third_of_the_budget_unless_told_otherwise():
    assert [studies.startup_trials(-1, trials) for trials in (1, 3, 20, 30)] == [1, 1, 6, 10]
    assert studies.startup_trials(4, 30) == 4
    study, _ = studies.open_study(
        "startup", optuna.storages.InMemoryStorage(), 0, "none", VARIANTS["basic_cnn"], {}, 6
    )
    # Optuna keeps it private; the sampler is the one the trials are drawn from.
    assert study.sampler._n_startup_trials == 6


def test_the_reconnecting_storage_wraps_every_private_call_optuna_s_cache_makes(monkeypatch):
    from optuna.storages import RDBStorage

    storage_class = tuning.reconnecting_rdb_storage()
    for name in (*tuning.CACHE_CALLS, "create_new_study", "get_all_trials"):
        assert vars(storage_class)[name].__wrapped__ is vars(RDBStorage)[name], name
    # A private call Optuna renamed is said, not silently left without retries.
    monkeypatch.setattr(tuning, "CACHE_CALLS", (*tuning.CACHE_CALLS, "_a_renamed_call"))
    tuning.reconnecting_rdb_storage.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="_a_renamed_call"):
            tuning.reconnecting_rdb_storage()
    finally:
        tuning.reconnecting_rdb_storage.cache_clear()
