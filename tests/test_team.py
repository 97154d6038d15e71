"""Running as a team: the MLflow tracking server on PostgreSQL with served artifacts and
basic authentication, users with read permission, tuning workers on one study against
it, and training over two replicas (two logical CPU devices standing in for two GPUs)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import optuna
import pytest
import requests
from helpers import POSTGRES, prepare_tiny
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from poster_ml.cli import main

PASSWORD = "correct-horse-battery-staple"
TINY = [
    "--variants",
    "basic_cnn",
    "--overrides",
    "max_epochs=2 batch_size=16",
]


def test_the_server_refuses_to_start_without_an_admin_password(monkeypatch, capsys):
    monkeypatch.delenv("POSTER_ML_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    assert main(["server"]) == 1
    assert "no admin password" in capsys.readouterr().err


def test_the_server_s_auth_settings_are_read_by_mlflow_with_the_credential_cache(
    tmp_path, monkeypatch
):
    """MLflow reads the settings file the server writes: the users database, the default
    permission and how long a verified password is trusted."""
    from mlflow.server.auth.config import read_auth_config

    from poster_ml.config.serving import ServerConfig
    from poster_ml.steps.server import auth_settings

    config = ServerConfig(
        auth_database_uri=f"{POSTGRES}/users", default_permission="READ", auth_cache_seconds=5
    )
    (tmp_path / "basic_auth.ini").write_text(auth_settings(config))
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(tmp_path / "basic_auth.ini"))
    read = read_auth_config()
    assert read.database_uri == f"{POSTGRES}/users" and read.default_permission == "READ"
    assert read.auth_cache_ttl_seconds == 5


@pytest.fixture
def team_server(postgres_database, tmp_path):
    runs_db, users_db = postgres_database("mlflow"), postgres_database("auth")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "poster_ml.cli",
        "server",
        "--backend-store-uri",
        f"{POSTGRES}/{runs_db}",
        "--auth-database-uri",
        f"{POSTGRES}/{users_db}",
        "--artifacts-destination",
        str(tmp_path / "artifacts"),
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    server = subprocess.Popen(
        command,
        env=os.environ | {"POSTER_ML_ADMIN_PASSWORD": PASSWORD},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{uri}/health", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.5)
    else:
        server.kill()
        pytest.fail("the team server did not come up")
    yield uri
    server.terminate()
    server.wait(timeout=30)


def as_user(monkeypatch, uri: str, user: str, password: str) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    mlflow.set_tracking_uri(uri)


@pytest.mark.slow
def test_a_team_trains_registers_and_serves_through_the_server(
    team_server, monkeypatch, tmp_path, capsys
):
    monkeypatch.chdir(tmp_path)
    as_user(monkeypatch, team_server, "admin", PASSWORD)
    prepare_tiny()
    assert main(["train", "--profile", "quick", "--trials", "0", *TINY]) == 0
    assert main(["register", "--allow-cpu", "true"]) == 0
    experiment = MlflowClient().get_experiment_by_name("poster-ml")
    from mlflow.server import get_app_client

    auth = get_app_client("basic-auth", tracking_uri=team_server)
    auth.create_user("reader", "reader-password-1")
    auth.grant_user_permission("reader", "experiment", experiment.experiment_id, "READ")
    auth.grant_user_permission("reader", "registered_model", "poster-ml", "READ")

    assert (
        requests.get(
            f"{team_server}/api/2.0/mlflow/experiments/search",
            params={"max_results": 1},
            timeout=10,
        ).status_code
        == 401
    )
    # A wrong password against the real server: one line that blames the credentials.
    as_user(monkeypatch, team_server, "reader", "a-wrong-password")
    capsys.readouterr()
    assert main(["evaluate"]) == 1
    printed = capsys.readouterr().err
    errors = [line for line in printed.splitlines() if "error:" in line]
    assert len(errors) == 1 and "refused the credentials" in errors[0]
    assert "a-wrong-password" not in printed and "Traceback" not in printed
    as_user(monkeypatch, team_server, "reader", "reader-password-1")
    # Version 1, whichever alias its gate gave it (two epochs may not beat chance).
    champion = mlflow.pyfunc.load_model("models:/poster-ml/1")  # Through the server, artifacts too.
    assert champion.metadata.signature is not None
    with pytest.raises(MlflowException) as refused:
        MlflowClient().create_run(experiment.experiment_id)
    assert "403" in str(refused.value) or refused.value.error_code == "PERMISSION_DENIED"
    with pytest.raises(MlflowException):
        MlflowClient().set_registered_model_alias("poster-ml", "champion", "1")


@pytest.mark.slow
def test_workers_that_share_nothing_but_the_server_tune_one_study_from_the_logged_data(
    team_server, postgres_database, tmp_path, monkeypatch
):
    """The README's team recipe on one machine: preprocess in one folder, two tuning workers
    in two others with no path in common (their own working folder, home and data cache),
    the prepared data only through the server, one study; then evaluate and register on
    either worker's train run from a fourth folder."""
    storage = f"postgresql+psycopg://postgres@127.0.0.1:5432/{postgres_database('optuna')}"
    optuna.storages.RDBStorage(storage)

    def machine(name: str) -> tuple[dict, Path]:
        home = tmp_path / name
        (home / "work").mkdir(parents=True)
        return os.environ | {
            "MLFLOW_TRACKING_URI": team_server,
            "MLFLOW_TRACKING_USERNAME": "admin",
            "MLFLOW_TRACKING_PASSWORD": PASSWORD,
            "HOME": str(home),
            "POSTER_ML_DATA_CACHE": str(home / "cache"),
        }, home / "work"

    environment, folder = machine("preprocessing")
    command = [sys.executable, "-m", "poster_ml.cli"]
    preprocess = [*command, "preprocess", "--count", "120", "--size", "40"]
    subprocess.run(preprocess, env=environment, cwd=folder, check=True, capture_output=True)
    shutil.rmtree(tmp_path / "preprocessing")  # Its disk is gone: the server has the data.
    client = MlflowClient(team_server)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        patch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
        experiment = client.get_experiment_by_name("poster-ml")
        (preprocess_run,) = client.search_runs(
            [experiment.experiment_id], "tags.`poster_ml.step` = 'preprocess'"
        )
    data = preprocess_run.data.tags["prepared_uri"]
    assert data == f"runs:/{preprocess_run.info.run_id}/prepared"
    train = [*command, "train", "--profile", "quick", "--data", data, "--trials", "4"]
    train += ["--storage", storage, "--study-name", "team", *TINY]
    workers = []
    for name in ("worker-1", "worker-2"):
        environment, folder = machine(name)
        workers.append(
            subprocess.Popen(
                train,
                env=environment,
                cwd=folder,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], [
        output[-2000:] for output in outputs
    ]
    for name in ("worker-1", "worker-2"):  # Each fetched the data into its own cache.
        digest = preprocess_run.data.tags["dataset_digest"]
        assert (tmp_path / name / "cache" / "prepared" / digest / "dataset.json").is_file()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        patch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
        trials = [
            run
            for run in client.search_runs(
                [experiment.experiment_id], "tags.`poster_ml.step` = 'trial'"
            )
            if run.info.status in ("FINISHED", "KILLED")
        ]
        train_runs = client.search_runs(
            [experiment.experiment_id], "tags.`poster_ml.step` = 'train'"
        )
        variants = client.search_runs(
            [experiment.experiment_id], "tags.`poster_ml.step` = 'train_variant'"
        )
    # Exactly N trials between the workers, each under its own worker's variant run; both
    # variant runs link the study's best trial's model.
    assert len(trials) == 4 and {run.data.tags["mlflow.parentRunId"] for run in trials} <= {
        run.info.run_id for run in variants
    }
    assert sorted(run.data.tags["mlflow.parentRunId"] for run in variants) == sorted(
        run.info.run_id for run in train_runs
    )
    assert len({run.data.tags["model_uri"] for run in variants}) == 1
    assert {run.data.tags["data_uri"] for run in train_runs} == {data}
    # The recipe goes on from a fourth machine: evaluate (latest) and register, on either
    # worker's run, each finding the data through the train run.
    environment, folder = machine("reviewer")
    monkeypatch.chdir(folder)
    monkeypatch.setenv("POSTER_ML_DATA_CACHE", environment["POSTER_ML_DATA_CACHE"])
    as_user(monkeypatch, team_server, "admin", PASSWORD)
    evaluate = ["evaluate", "--bootstrap-samples", "20", "--cam-posters", "2"]
    assert main([*evaluate, "--activations-variant", "none"]) == 0
    (evaluation,) = MlflowClient().search_runs(
        [experiment.experiment_id], "tags.`poster_ml.step` = 'evaluate'"
    )
    inputs = evaluation.inputs.dataset_inputs
    assert {json.loads(item.dataset.source)["uri"] for item in inputs} == {data}
    assert evaluation.data.tags["dataset_digest"] == preprocess_run.data.tags["dataset_digest"]
    for train_run in train_runs:
        register = ["register", "--train-run", train_run.info.run_id, "--allow-cpu", "true"]
        assert main([*register, "--bootstrap-samples", "20"]) == 0


@pytest.mark.slow
def test_training_over_two_replicas_scales_batch_and_learning_rate_and_logs_them(tmp_path):
    """Two logical CPU devices stand in for two GPUs: the MirroredStrategy path runs."""
    prepare_tiny(str(tmp_path / "data" / "prepared"))
    environment = os.environ | {"POSTER_ML_CPU_REPLICAS": "2"}
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "poster_ml.cli",
            "train",
            "--profile",
            "quick",
            "--trials",
            "0",
            *TINY,
        ],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    variant = next(
        run
        for run in client.search_runs([e.experiment_id for e in client.search_experiments()])
        if run.data.tags.get("poster_ml.step") == "train_variant"
    )
    assert variant.data.tags["replicas"] == "2"
    model = mlflow.search_logged_models(
        experiment_ids=[variant.info.experiment_id], output_format="list"
    )[0]
    assert model.params["global_batch_size"] == "32" and float(
        model.params["learning_rate"]
    ) == pytest.approx(2e-3)


def test_a_missing_role_or_database_is_one_line_within_seconds(monkeypatch, capsys):
    monkeypatch.setenv("POSTER_ML_ADMIN_PASSWORD", PASSWORD)
    for uri, expected in (
        (
            f"{POSTGRES.replace('postgres@', 'nosuchrole@')}/test",
            'role "nosuchrole" does not exist',
        ),
        (f"{POSTGRES}/no_such_database", 'database "no_such_database" does not exist'),
    ):
        started = time.monotonic()
        assert (
            main(["server", "--backend-store-uri", uri, "--auth-database-uri", f"{POSTGRES}/test"])
            == 1
        )
        errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert time.monotonic() - started < 15
        assert (
            len(errors) == 1
            and "cannot open the runs database" in errors[0]
            and expected in errors[0]
        ), errors
