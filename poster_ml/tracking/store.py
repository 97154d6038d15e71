"""The tracking store: where runs go, whether it can be reached, links into its UI, and
finding runs and their files again."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from poster_ml.config import environment
from poster_ml.databases import redacted
from poster_ml.errors import DatasetError, TrackingStoreError
from poster_ml.tracking import schema

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = environment.DEFAULT_EXPERIMENT
EXPERIMENT_KIND = "mlflow.experimentKind"


def configure_tracking() -> str:
    """Uses MLFLOW_TRACKING_URI when set, else a SQLite store mlflow.db in the working
    directory; returns the id of the experiment runs go to."""
    uri = environment.tracking_uri()
    mlflow.set_tracking_uri(uri)
    check_reachable(uri)
    # Under `mlflow run` the run and its experiment already exist; elsewhere pick ours.
    # (MLFLOW_EXPERIMENT_ID is no sign of that: mlflow.set_experiment itself sets it.)
    if run_id := environment.project_run_id():
        run = MlflowClient().get_run(run_id)
        if note := default_experiment_note(run):
            log.warning(note)
        return run.info.experiment_id
    return mlflow.set_experiment(environment.experiment_name()).experiment_id


def default_experiment_note(run: mlflow.entities.Run) -> str | None:
    """`mlflow run` without --experiment-name puts its run in MLflow's Default experiment;
    when the project's own experiment has runs elsewhere, one line says how to keep them
    together (said by the top-level run only, not by each step under `main`)."""
    if run.info.experiment_id != "0" or schema.PARENT_TAG in run.data.tags:
        return None
    if MlflowClient().get_experiment_by_name(DEFAULT_EXPERIMENT) is None:
        return None
    return (
        f"note: mlflow run put this run in the experiment Default, not in {DEFAULT_EXPERIMENT} "
        f"with the project's other runs; pass --experiment-name {DEFAULT_EXPERIMENT} "
        "(or set MLFLOW_EXPERIMENT_NAME) to keep them together"
    )


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """One quick look at a tracking server or database before MLflow's own client, which
    retries an unreachable one for minutes before saying anything."""
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme in ("", "file") or parts.scheme.startswith("sqlite") or not parts.hostname:
        return
    default_port = {"http": 80, "https": 443, "mysql": 3306, "mssql": 1433}.get(
        parts.scheme.split("+")[0], 5432
    )
    try:
        socket.create_connection(
            (parts.hostname, parts.port or default_port), timeout=timeout
        ).close()
    except OSError as error:
        raise TrackingStoreError(
            f"cannot reach the tracking store {redacted(uri)}; is the server or database running? --verbose shows the cause"
        ) from error


def mark_model_training(experiment_id: str) -> None:
    """Tags the experiment as model training, so the UI shows runs, models and the registry
    rather than its GenAI views (links add ?workflowType=machine_learning too, since the
    tag alone does not switch a UI that already chose)."""
    client = MlflowClient()
    if client.get_experiment(experiment_id).tags.get(EXPERIMENT_KIND) != "custom_model_development":
        with contextlib.suppress(MlflowException):  # Another worker may set it at the same moment.
            client.set_experiment_tag(experiment_id, EXPERIMENT_KIND, "custom_model_development")


def ui_link(experiment_id: str, run_id: str | None = None, artifact: str = "") -> str:
    """The run's page in the MLflow UI (the tracking server, or `make ui` on port 5000),
    or with `artifact` that file in the run's Artifacts tab."""
    parts = urllib.parse.urlsplit(mlflow.get_tracking_uri())
    port = f":{parts.port}" if parts.port else ""
    base = (
        f"{parts.scheme}://{parts.hostname}{port}{parts.path.rstrip('/')}"
        if parts.scheme in ("http", "https")
        else "http://127.0.0.1:5000"
    )
    page = f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    if artifact:
        return f"{base}/{page}/artifacts/{artifact}"
    return f"{base}/{page}?workflowType=machine_learning"


def experiment_name() -> str:
    """The active run's experiment (or the one configured), for naming studies."""
    active = mlflow.active_run()
    if active is not None:
        return MlflowClient().get_experiment(active.info.experiment_id).name
    return environment.experiment_name()


def find_train_run(train_run: str) -> mlflow.entities.Run:
    """The train step's parent run by id, or the latest finished one for 'latest'."""
    client = MlflowClient()
    if train_run != "latest":
        try:
            return client.get_run(train_run)
        except MlflowException as error:
            # Only a run that is not there is "no such run"; an unreachable store or
            # refused credentials say so (store_errors.py).
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise TrackingStoreError(
                f"no such train run: {train_run} (in the tracking store {redacted(mlflow.get_tracking_uri())})"
            ) from error
    latest = schema.latest_train_run()
    if latest is None:
        raise DatasetError(
            "no finished train run in the tracking store; run `poster-ml train` first or pass --model-uri"
        )
    return latest


def evaluation_report(train_run_id: str) -> str | None:
    """The report of the latest finished evaluate run of a train run, as a runs:/ URI."""
    evaluation = schema.latest_evaluate_run(train_run_id)
    return f"runs:/{evaluation.info.run_id}/report.html" if evaluation else None


def load_run_bytes(run_id: str, path: str) -> bytes | None:
    """An artifact's bytes, or None where the run has no file at that path."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=path, dst_path=folder
            )
        except (MlflowException, OSError):  # Not logged: MLflow says so with either, by store.
            return None
        return Path(local).read_bytes()


def load_run_dict(run_id: str, path: str) -> dict[str, Any] | None:
    """A JSON artifact of a run, or None where the run has none at that path."""
    contents = load_run_bytes(run_id, path)
    return None if contents is None else json.loads(contents)
