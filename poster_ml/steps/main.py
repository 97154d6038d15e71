"""The main entry point: chains the steps as MLflow project runs, skipping unchanged ones.

As in MLflow's multistep workflow example, each step is its own run of its own entry
point and hands over through runs: train and evaluate take the preprocess run's dataset
(runs:/<preprocess run>/prepared), evaluate and register the train run. A step whose entry
point, parameters and source commit match a finished run (and whose output is still in
place) is not run again.
"""

from __future__ import annotations

import dataclasses
import logging

import mlflow
from mlflow.tracking import MlflowClient
from mlflow.utils import mlflow_tags

from poster_ml.config import DEFAULT_DATA, ENTRY_POINTS, WorkflowConfig
from poster_ml.steps.project_runs import preprocess_parameters, previous_run, run_entry_point
from poster_ml.tracking import schema
from poster_ml.tracking.datasets import prepared_uri
from poster_ml.tracking.store import configure_tracking

log = logging.getLogger(__name__)


def step_parameters(config: WorkflowConfig, entry_point: str, **given: object) -> dict[str, str]:
    """The workflow's settings that the entry point has too (same name, same meaning), and
    `given`, the ones main decides itself; as the strings MLflow passes."""
    names = {field.name for field in dataclasses.fields(ENTRY_POINTS[entry_point])}
    shared = {name: value for name, value in dataclasses.asdict(config).items() if name in names}
    return {name: str(value) for name, value in (shared | given).items()}


def run_step(
    entry_point: str, parameters: dict[str, str], force: bool, still_valid=lambda run: True
) -> mlflow.entities.Run:
    active = mlflow.active_run()
    if active is None:
        raise RuntimeError("no active main run")
    experiment_id = active.info.experiment_id
    git_commit = (
        MlflowClient().get_run(active.info.run_id).data.tags.get(mlflow_tags.MLFLOW_GIT_COMMIT)
    )
    if not force:
        run = previous_run(experiment_id, entry_point, parameters, git_commit)
        if run is not None and still_valid(run):
            log.info(f"skipping {entry_point}: finished run {run.info.run_id} had the same inputs")
            return run
    log.info(f"running {entry_point}")
    log.debug(f"{entry_point} parameters: {parameters}")
    return run_entry_point(entry_point, parameters, experiment_id)


def allow_cpu(config: WorkflowConfig) -> str:
    """'auto' registers a CPU-trained model on a machine without a GPU, and says so."""
    if config.allow_cpu != "auto":
        return config.allow_cpu
    from poster_ml.devices import has_gpu

    if has_gpu():
        return "false"
    log.warning("no GPU here: register may pick a CPU-trained variant (allow_cpu=auto)")
    return "true"


def run_workflow(config: WorkflowConfig) -> None:
    from poster_ml.data.prepared import load_prepared
    from poster_ml.errors import PosterMLError

    def same_dataset(run: mlflow.entities.Run) -> bool:
        """A finished step counts only if the prepared data on disk is still what it used."""
        try:
            return load_prepared(config.data).digest == schema.digest_of(run)
        except PosterMLError:
            return False

    size = config.size or DEFAULT_DATA[config.profile]["size"]
    configure_tracking()
    with mlflow.start_run(run_name="main") as parent:
        mlflow.set_tags(schema.step_tag("main"))
        preprocess = run_step(
            "preprocess",
            preprocess_parameters(step_parameters(config, "preprocess", size=size), config.data),
            config.force,
            same_dataset,
        )
        data = prepared_uri(preprocess.info.run_id)
        train = run_step(
            "train", step_parameters(config, "train", data=data), config.force, same_dataset
        )
        handover = {"train_run": train.info.run_id, "data": data}
        evaluate = run_step(
            "evaluate", step_parameters(config, "evaluate", **handover), config.force
        )
        # A laptop has no GPU: by default main registers the best model whatever trained it.
        register = run_step(
            "register",
            step_parameters(config, "register", **handover, allow_cpu=allow_cpu(config)),
            config.force,
        )
        mlflow.set_tags(
            {
                f"{step}_run_id": run.info.run_id
                for step, run in zip(
                    ("preprocess", "train", "evaluate", "register"),
                    (preprocess, train, evaluate, register),
                    strict=True,
                )
            }
        )
    log.info(f"main run {parent.info.run_id} finished")
