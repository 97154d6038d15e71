"""The main entry point: chains the steps as MLflow project runs, skipping unchanged ones.

As in MLflow's multistep workflow example, each step is its own run of its own entry
point; a step whose entry point, parameters and source commit match a finished run
(and whose output is still in place) is not run again.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient
from mlflow.utils import mlflow_tags

from poster_ml.config import WorkflowConfig
from poster_ml.tracking.runs import configure_tracking

PROJECT_DIR = Path(__file__).resolve().parents[2]


def active_run() -> mlflow.ActiveRun:
    """The main run, which every step runs under."""
    active = mlflow.active_run()
    if active is None:
        raise RuntimeError("no active main run")
    return active


def previous_run(
    entry_point: str, parameters: dict[str, str], git_commit: str | None
) -> mlflow.entities.Run | None:
    """The latest finished run of `entry_point` with these parameters and source commit."""
    client = MlflowClient()
    experiment_id = active_run().info.experiment_id
    for run in client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{mlflow_tags.MLFLOW_PROJECT_ENTRY_POINT}` = '{entry_point}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
    ):
        # `mlflow run` logs string parameters as the shell-quoted text it substituted.
        if any(
            run.data.params.get(name) not in (value, shlex.quote(value))
            for name, value in parameters.items()
        ):
            continue
        if git_commit and run.data.tags.get(mlflow_tags.MLFLOW_GIT_COMMIT) != git_commit:
            continue
        return run
    return None


def run_step(
    entry_point: str, parameters: dict[str, object], force: bool, still_valid=lambda run: True
) -> mlflow.entities.Run:
    text = {name: str(value) for name, value in parameters.items()}
    active = active_run()
    git_commit = (
        MlflowClient().get_run(active.info.run_id).data.tags.get(mlflow_tags.MLFLOW_GIT_COMMIT)
    )
    if not force:
        run = previous_run(entry_point, text, git_commit)
        if run is not None and still_valid(run):
            print(f"skipping {entry_point}: finished run {run.info.run_id} had the same inputs")
            return run
    print(f"running {entry_point} with {text}")
    # MLproject commands start with `python`: make it this interpreter, venv activated or not.
    os.environ["PATH"] = os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]
    )
    submitted = mlflow.projects.run(
        str(PROJECT_DIR),
        entry_point=entry_point,
        parameters=text,
        env_manager="local",
        experiment_id=active.info.experiment_id,
        synchronous=True,
    )
    return MlflowClient().get_run(submitted.run_id)


def allow_cpu(config: WorkflowConfig) -> str:
    """'auto' registers a CPU-trained model on a machine without a GPU, and says so."""
    if config.allow_cpu != "auto":
        return config.allow_cpu
    from poster_ml.devices import has_gpu

    if has_gpu():
        return "false"
    print("no GPU here: register may pick a CPU-trained variant (allow_cpu=auto)")
    return "true"


def run_workflow(config: WorkflowConfig) -> None:
    from poster_ml.config import AugmentConfig, TrainConfig, train_config
    from poster_ml.data.prepared import load_prepared
    from poster_ml.errors import PosterMLError
    from poster_ml.config.settings import parse_overrides, split_overrides

    def same_dataset(run: mlflow.entities.Run) -> bool:
        """A finished step counts only if the prepared data on disk is still what it used."""
        try:
            return load_prepared(config.data).digest == run.data.tags.get("dataset_digest")
        except PosterMLError:
            return False

    train_overrides, _ = split_overrides(
        parse_overrides(config.overrides), TrainConfig, AugmentConfig
    )
    image_size = train_config(config.profile, train_overrides).image_size
    configure_tracking()
    with mlflow.start_run(run_name="main") as parent:
        mlflow.set_tag("poster_ml.step", "main")
        preprocess_parameters = {
            "source": config.source,
            "images": config.images,
            "count": config.count,
            "size": image_size,
            "out": config.data,
        }
        preprocess = run_step("preprocess", preprocess_parameters, config.force, same_dataset)
        train = run_step(
            "train",
            {
                "profile": config.profile,
                "data": config.data,
                "variants": config.variants,
                "overrides": config.overrides,
                "trials": config.trials,
            },
            config.force,
            same_dataset,
        )
        evaluate = run_step("evaluate", {"train_run": train.info.run_id}, config.force)
        # A laptop has no GPU: by default main registers the best model whatever trained it.
        register = run_step(
            "register",
            {"train_run": train.info.run_id, "allow_cpu": allow_cpu(config)},
            config.force,
        )
        mlflow.set_tags(
            {
                "preprocess_run_id": preprocess.info.run_id,
                "train_run_id": train.info.run_id,
                "evaluate_run_id": evaluate.info.run_id,
                "register_run_id": register.info.run_id,
            }
        )
    print(f"main run {parent.info.run_id} finished")
