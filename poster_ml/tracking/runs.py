"""Runs: where tracking goes, the step and variant runs, and finding runs and models again."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import socket
import urllib.parse
from collections.abc import Iterator
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import poster_ml
from poster_ml.config.settings import flatten
from poster_ml.databases import redacted
from poster_ml.errors import DatasetError, TrackingStoreError
from poster_ml.tracking import resume

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "poster-ml"


def configure_tracking() -> str:
    """Uses MLFLOW_TRACKING_URI when set, else a SQLite store mlflow.db in the working
    directory; returns the id of the experiment runs go to."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    mlflow.set_tracking_uri(uri)
    check_reachable(uri)
    # Under `mlflow run` the run and its experiment already exist; elsewhere pick ours.
    # (MLFLOW_EXPERIMENT_ID is no sign of that: mlflow.set_experiment itself sets it.)
    if "MLFLOW_RUN_ID" in os.environ:
        run = MlflowClient().get_run(os.environ["MLFLOW_RUN_ID"])
        if note := default_experiment_note(run):
            print(note)
        return run.info.experiment_id
    return mlflow.set_experiment(
        os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    ).experiment_id


def default_experiment_note(run: mlflow.entities.Run) -> str | None:
    """`mlflow run` without --experiment-name puts its run in MLflow's Default experiment;
    when the project's own experiment has runs elsewhere, one line says how to keep them
    together (said by the top-level run only, not by each step under `main`)."""
    if run.info.experiment_id != "0" or "mlflow.parentRunId" in run.data.tags:
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


def config_params(configs: dict[str, Any], step: str, logged: dict[str, str]) -> dict[str, Any]:
    """Flat run parameters named '<concern>.<setting>', e.g. 'preprocess.seed'.

    The prefix keeps them apart from the raw strings `mlflow run` logs for MLproject
    parameters, which MLflow would refuse to overwrite with the typed values. A setting of
    the entry point's own concern that `mlflow run` already logged (`logged`) is not
    logged a second time.
    """
    own = (step, "step")  # The train entry point's options are its "step" concern.
    return {
        f"{concern}.{name}": value
        for concern, config in configs.items()
        for name, value in flatten(config).items()
        if not (concern in own and name in logged)
    }


@contextlib.contextmanager
def step_run(
    step: str, configs: dict[str, Any], seed: int, resumable: bool = False, restart: bool = False
) -> Iterator[mlflow.ActiveRun]:
    """Starts (or, under `mlflow run`, continues) the run of one step, logging its whole config.

    A resumable step started again with the same config (and no `restart`) takes up the
    run that a dead process left unfinished: `poster-ml` reopens that run; under `mlflow
    run`, which has made a new run already, the new run continues it (tag
    poster_ml.continues; see `predecessor`). Runs left RUNNING by other dead processes
    of this host, nested ones included, are marked FAILED (resume.py).
    """
    experiment_id = configure_tracking()
    flat = {concern: dataclasses.asdict(config) for concern, config in configs.items()}
    key = resume.config_key(
        step,
        {
            concern: {k: v for k, v in values.items() if k != "restart"}
            for concern, values in flat.items()
        },
    )
    current = os.environ.get("MLFLOW_RUN_ID")
    previous = (
        resume.interrupted_run(experiment_id, step, key, exclude=current)
        if resumable and not restart
        else None
    )
    resume.fail_dead_runs(
        experiment_id, keep=current if current else previous.info.run_id if previous else None
    )
    if previous is not None:
        print(
            f"resuming the interrupted {step} run {previous.info.run_id} (--restart starts afresh)"
            if current is None
            else f"continuing the interrupted {step} run {previous.info.run_id} in this run (restart=true starts afresh)"
        )
    run_id = previous.info.run_id if previous and current is None else None
    with mlflow.start_run(run_id=run_id, log_system_metrics=system_metrics(step)) as run:
        # Runs are named after their step, so the runs table says which is which.
        mlflow.set_tags(
            {
                "mlflow.runName": step,
                "poster_ml.step": step,
                "poster_ml.version": poster_ml.__version__,
                "seed": str(seed),
                "python": platform.python_version(),
            }
            | resume.process_tags(key)
        )
        if previous is not None and current is not None:
            mlflow.set_tag(CONTINUES, previous.info.run_id)
            MlflowClient().set_tag(previous.info.run_id, "poster_ml.continued_in", run.info.run_id)
        if previous is None or current is not None:
            mlflow.log_params(
                config_params(configs, step, MlflowClient().get_run(run.info.run_id).data.params)
            )
            mlflow.log_dict(flat, "config.json")
        mark_model_training(run.info.experiment_id)
        yield run
    print(f"{step} run: {ui_link(run.info.experiment_id, run.info.run_id)}")


CONTINUES = "poster_ml.continues"
SYSTEM_METRICS_STEPS = ("train", "evaluate")


def system_metrics(step: str) -> bool:
    """Whether the run logs MLflow's system metrics (CPU, memory, disk, network; GPU
    through nvidia-ml-py where one exists): on for the long steps, off with MLflow's own
    switch MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false."""
    return step in SYSTEM_METRICS_STEPS and os.environ.get(
        "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true"
    ).lower() not in ("false", "0")


def predecessor(run: mlflow.ActiveRun) -> str | None:
    """The interrupted run whose work this run continues (under `mlflow run`), if any."""
    return MlflowClient().get_run(run.info.run_id).data.tags.get(CONTINUES)


def parent_id(run: mlflow.entities.Run) -> str | None:
    return run.data.tags.get("mlflow.parentRunId")


EXPERIMENT_KIND = "mlflow.experimentKind"


def mark_model_training(experiment_id: str) -> None:
    """Tags the experiment as model training, so the UI shows runs, models and the registry
    rather than its GenAI views (links add ?workflowType=machine_learning too, since the
    tag alone does not switch a UI that already chose)."""
    client = MlflowClient()
    if client.get_experiment(experiment_id).tags.get(EXPERIMENT_KIND) != "custom_model_development":
        with contextlib.suppress(MlflowException):  # Another worker may set it at the same moment.
            client.set_experiment_tag(experiment_id, EXPERIMENT_KIND, "custom_model_development")


def ui_link(experiment_id: str, run_id: str | None = None) -> str:
    """The run's page in the MLflow UI (the tracking server, or `make ui` on port 5000)."""
    parts = urllib.parse.urlsplit(mlflow.get_tracking_uri())
    port = f":{parts.port}" if parts.port else ""
    base = (
        f"{parts.scheme}://{parts.hostname}{port}{parts.path.rstrip('/')}"
        if parts.scheme in ("http", "https")
        else "http://127.0.0.1:5000"
    )
    page = f"#/experiments/{experiment_id}" + (f"/runs/{run_id}" if run_id else "")
    return f"{base}/{page}?workflowType=machine_learning"


def child_run(parent_id: str, name: str) -> mlflow.entities.Run | None:
    """The latest nested run of that name under a run."""
    client = MlflowClient()
    parent = client.get_run(parent_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent_id}' and attributes.run_name = '{name}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def experiment_name() -> str:
    """The active run's experiment (or the one configured), for naming studies."""
    active = mlflow.active_run()
    if active is not None:
        return MlflowClient().get_experiment(active.info.experiment_id).name
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT


def active_run_id() -> str:
    active = mlflow.active_run()
    if active is None:
        raise RuntimeError("no active run: call this inside step_run")
    return active.info.run_id


def set_tags(tags: dict[str, str]) -> None:
    mlflow.set_tags(tags)


@contextlib.contextmanager
def variant_run(
    name: str, parent: mlflow.ActiveRun, tags: dict[str, str], run_id: str | None = None
) -> Iterator[mlflow.ActiveRun]:
    """A nested run for one variant under the train step's run; with `run_id`, that run
    again (the variant run of an interrupted train run that this process resumes)."""
    if run_id is not None:
        with mlflow.start_run(run_id=run_id, nested=True) as run:
            yield run
        return
    with mlflow.start_run(run_name=name, nested=True, parent_run_id=parent.info.run_id) as run:
        mlflow.set_tags(
            tags | {"variant": name, "poster_ml.step": "train_variant"} | resume.owner_tags()
        )
        yield run


def all_experiment_ids(client: MlflowClient) -> list[str]:
    return [experiment.experiment_id for experiment in client.search_experiments()]


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
    runs = client.search_runs(
        all_experiment_ids(client),
        "tags.`poster_ml.step` = 'train' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise DatasetError(
            "no finished train run in the tracking store; run `poster-ml train` first or pass --model-uri"
        )
    return runs[0]
