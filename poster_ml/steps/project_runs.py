"""Steps run as MLflow project runs of their own entry point, as in MLflow's multistep
workflow example: `main` chains them, and `train` starts `preprocess` this way when its
default data folder is empty. A step whose entry point, parameters and source commit match
a finished run is found again instead of run twice.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient
from mlflow.utils import mlflow_tags

from poster_ml.config import environment
from poster_ml.tracking import schema

PROJECT_DIR = Path(__file__).resolve().parents[2]


def previous_run(
    experiment_id: str, entry_point: str, parameters: dict[str, str], git_commit: str | None
) -> mlflow.entities.Run | None:
    """The latest finished run of `entry_point` with these parameters and source commit."""
    for run in schema.finished_entry_point_runs(experiment_id, entry_point):
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


def preprocess_parameters(given: Mapping[str, object], out: str | Path) -> dict[str, str]:
    """The parameters of a preprocess run that a step starts (`main`, or train on its empty
    default folder), as the strings MLflow passes: MLflow runs the entry point in the
    project's folder, so the output folder is made absolute."""
    return {name: str(value) for name, value in given.items()} | {"out": str(Path(out).resolve())}


def run_entry_point(
    entry_point: str, parameters: dict[str, str], experiment_id: str
) -> mlflow.entities.Run:
    """Runs one entry point of this project as its own MLflow run, in this environment."""
    # MLproject commands start with `python`: make it this interpreter, venv activated or not.
    environment.put_first_on_path(str(Path(sys.executable).parent))
    submitted = mlflow.projects.run(
        str(PROJECT_DIR),
        entry_point=entry_point,
        parameters=parameters,
        env_manager="local",
        experiment_id=experiment_id,
        synchronous=True,
    )
    return MlflowClient().get_run(submitted.run_id)
