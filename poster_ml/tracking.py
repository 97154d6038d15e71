"""Everything that talks to the MLflow tracking store for the pipeline's steps."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import warnings
from typing import Any, Iterator

import mlflow
import numpy as np

import poster_ml
from poster_ml import CLASS_NAMES, plots
from poster_ml.config import flatten
from poster_ml.dataset import PreparedData

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "poster-ml"


def configure_tracking() -> str:
    """Uses MLFLOW_TRACKING_URI when set, else a SQLite store mlflow.db in the working directory."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    mlflow.set_tracking_uri(uri)
    # Under `mlflow run` the run and its experiment already exist; elsewhere pick ours.
    if "MLFLOW_RUN_ID" not in os.environ and "MLFLOW_EXPERIMENT_ID" not in os.environ:
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT)
    return uri


def config_params(configs: dict[str, Any]) -> dict[str, Any]:
    """Flat run parameters named '<concern>.<setting>', e.g. 'preprocess.seed'.

    The prefix keeps them apart from the raw strings `mlflow run` logs for MLproject
    parameters, which MLflow would refuse to overwrite with the typed values.
    """
    return {f"{concern}.{name}": value for concern, config in configs.items() for name, value in flatten(config).items()}


@contextlib.contextmanager
def step_run(step: str, configs: dict[str, Any], seed: int, **start_kwargs) -> Iterator[mlflow.ActiveRun]:
    """Starts (or, under `mlflow run`, resumes) the run of one step, logging its whole config."""
    configure_tracking()
    with mlflow.start_run(**start_kwargs) as run:
        mlflow.set_tags({"poster_ml.step": step, "poster_ml.version": poster_ml.__version__, "seed": str(seed), "python": platform.python_version()})
        mlflow.log_params(config_params(configs))
        mlflow.log_dict({concern: dataclasses.asdict(config) for concern, config in configs.items()}, "config.json")
        yield run


def dataset_input(data: PreparedData, context: str) -> None:
    """Logs the prepared dataset as the run's MLflow dataset input, carrying our full digest."""
    manifest, digest = data.manifest, data.info["digest"]
    with warnings.catch_warnings():
        # MLflow warns that a local path could be one of two equivalent source kinds, and
        # that integer columns cannot hold missing values; neither applies to a manifest.
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(
            manifest,
            source=str(data.path.resolve()),
            targets="label",
            name=f"posters-{digest[:12]}",
            # The store keeps at most 36 characters of a digest; the full one travels as a tag.
            digest=digest[:32],
        )
        mlflow.log_input(dataset, context=context, tags={"sha256": digest})
    mlflow.set_tag("dataset_digest", digest)


def log_preprocess(dataset: PreparedData) -> None:
    info = dataset.info
    dataset_input(dataset, context="preprocess")
    mlflow.log_metrics({"inputs": info["inputs"], "accepted": info["accepted"], "rejected": info["rejected"]})
    for name in ("manifest.csv", "rejects.csv", "dataset.json"):
        mlflow.log_artifact(str(dataset.path / name))
    mlflow.log_figure(plots.class_balance_chart(info["counts"]), "class_balance.png")
    mlflow.log_figure(plots.sample_grid(sample_posters(dataset)), "sample_posters.png")


def sample_posters(dataset: PreparedData, per_class: int = 8) -> dict[str, np.ndarray]:
    """The first training posters of each class, read from the shard."""
    train, reader = dataset.split("train"), dataset.reader("train")
    return {name: reader.read(train[train["class"] == name]["row"].to_numpy()[:per_class]) for name in reversed(CLASS_NAMES)}
