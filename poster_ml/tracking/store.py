"""The tracking store: where runs go, whether it can be reached, what its failures mean,
links into its UI, and a run's files written and read back.

A failure is told in one line a user can act on, by the error's type and code, never by
the words of its message: a run that is not there, a store that cannot be reached, a
store that refuses the credentials, and a file the program could not read or write are
different messages; each names the store's URI without its password, or the file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sqlite3
import tempfile
import traceback
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import mlflow
import requests
import sqlalchemy.exc
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from poster_ml.config import environment
from poster_ml.databases import redacted
from poster_ml.errors import DatasetError, PosterMLError, TrackingStoreError, first_line
from poster_ml.tracking import schema

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = environment.DEFAULT_EXPERIMENT
EXPERIMENT_KIND = "mlflow.experimentKind"
REFUSED_CODES = {"UNAUTHENTICATED", "PERMISSION_DENIED"}
REFUSED_STATUS = {401, 403}
# PostgreSQL's SQLSTATE class 28: invalid authorization (a wrong password, an unknown role).
REFUSED_SQLSTATE_CLASS = "28"
STUDIES_MESSAGES = {
    "refused": "the studies database (train's --storage) refused the credentials (give them in its URL); --verbose shows the cause",
    "unreachable": "cannot reach the studies database (train's --storage); is its server running? --verbose shows the cause",
}


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
        raise unreachable_store(redacted(uri)) from error


def unreachable_store(uri: str) -> TrackingStoreError:
    """The one line for a store that does not answer, whether the quick look before MLflow's
    client or the client's own retries found it (`uri` already redacted)."""
    return TrackingStoreError(
        f"cannot reach the tracking store {uri}; is the server or database running? --verbose shows the cause"
    )


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


def active_uri() -> str:
    """The store MLflow uses now, or the one configured when MLflow has none yet."""
    return mlflow.get_tracking_uri() or environment.tracking_uri()


def causes(error: BaseException) -> Iterator[BaseException]:
    """The error and the chain of errors behind it."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def store_error(error: Exception) -> PosterMLError | None:
    """The one-line error for a tracking-store or file failure, or None if `error` is not one."""
    uri = redacted(active_uri())
    refused = TrackingStoreError(
        f"the tracking store {uri} refused the credentials (set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD); --verbose shows the cause"
    )
    unreachable = unreachable_store(uri)
    for cause in causes(error):
        kind = classify(cause)
        if kind in STUDIES_MESSAGES and raised_by_optuna_storage(cause):
            return TrackingStoreError(STUDIES_MESSAGES[kind])
        if kind == "refused":
            return refused
        if kind == "unreachable":
            return unreachable
        if kind == "missing":
            return TrackingStoreError(f"{first_line(cause, 300)} (in the tracking store {uri})")
        if kind == "file" and isinstance(cause, OSError):
            return DatasetError(f"{cause.strerror or type(cause).__name__}: {cause.filename}")
    return None


def classify(error: BaseException) -> str | None:
    """refused, unreachable, missing (a run or model that is not there), file, or None."""
    if isinstance(error, MlflowException):
        if error.error_code in REFUSED_CODES or error.get_http_status_code() in REFUSED_STATUS:
            return "refused"
        return "missing" if error.error_code == "RESOURCE_DOES_NOT_EXIST" else None
    if isinstance(error, requests.exceptions.HTTPError):
        return (
            "refused"
            if error.response is not None and error.response.status_code in REFUSED_STATUS
            else None
        )
    if isinstance(
        error,
        (
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            ConnectionError,
            TimeoutError,
        ),
    ):
        return "unreachable"
    if sqlstate(error).startswith(REFUSED_SQLSTATE_CLASS):
        return "refused"
    if isinstance(error, database_connection_errors()):
        return "unreachable"
    if isinstance(error, OSError) and error.filename is not None:
        return "file"
    return None


def raised_by_optuna_storage(error: BaseException) -> bool:
    """Whether Optuna's storage raised it: a database error there is the studies database's,
    not the tracking store's (both may be SQLAlchemy on PostgreSQL or SQLite)."""
    return any(
        frame.f_globals.get("__name__", "").startswith("optuna.storages")
        for frame, _ in traceback.walk_tb(error.__traceback__)
    )


def database_connection_errors() -> tuple[type[BaseException], ...]:
    """The errors a database raises when it cannot be opened or connected to."""
    errors: tuple[type[BaseException], ...] = (
        sqlalchemy.exc.OperationalError,
        sqlite3.OperationalError,
    )
    try:
        import psycopg  # The server extra's.
    except ImportError:
        return errors
    return (*errors, psycopg.OperationalError)


def sqlstate(error: BaseException) -> str:
    """A database error's SQLSTATE (psycopg keeps it on the error, sqlalchemy on .orig)."""
    for candidate in (error, getattr(error, "orig", None)):
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str):
            return state
    return ""


def log_figure(figure, path: str, run_id: str | None = None) -> None:
    """Logs a figure to a run (the active one by default) and frees it."""
    if run_id is None:
        mlflow.log_figure(figure, path)
    else:
        MlflowClient().log_figure(run_id, figure, path)
    plt.close(figure)


def log_files(paths: list) -> None:
    for path in paths:
        mlflow.log_artifact(str(path))


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
