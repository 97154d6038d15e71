"""Finding and loading logged poster models: the variants of a train run to evaluate,
their files for a server, or the Keras model and its settings inside the pyfunc."""

from __future__ import annotations

import dataclasses
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException

from poster_ml.errors import DatasetError, first_line
from poster_ml.tracking import schema
from poster_ml.tracking.store import load_run_dict
from poster_ml.tracking.variant_models import ROW_FILE


def download_model(model_uri: str, folder: str) -> str:
    """The logged model's files in a local folder, for a server to load."""
    try:
        return mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder)
    except (MlflowException, OSError) as error:
        raise DatasetError(f"cannot load model {model_uri}: {first_line(error)}") from error


def load_poster_model(model_uri: str):
    """The Keras model inside a logged poster pyfunc, and its settings (image size, threshold)."""
    try:
        wrapper = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    except (MlflowException, OSError) as error:
        raise DatasetError(f"cannot load model {model_uri}: {first_line(error)}") from error
    return wrapper.model, wrapper.settings


def model_id(model_uri: str) -> str | None:
    """The logged model's id behind any model URI (models:/m-..., models:/name@alias, runs:/...)."""
    try:
        return mlflow.models.get_model_info(model_uri).model_id
    except (MlflowException, OSError):
        return None


@dataclasses.dataclass(frozen=True)
class EvaluationTarget:
    """One model to evaluate, and the variant run (if any) its results belong to."""

    name: str
    model_uri: str
    run_id: str | None
    summary: dict[str, Any]


def variant_runs(train: mlflow.entities.Run) -> list[mlflow.entities.Run]:
    """The variant runs under a train run that have a model, in training order; one line
    of error when there are none."""
    children = schema.child_runs(train)
    with_model = [child for child in children if "model_uri" in child.data.tags]
    if not with_model:
        raise DatasetError(
            f"train run {train.info.run_id} has no variant with a model (it trained nothing, or every variant failed); "
            "train again, or pass --train-run with a run that has one"
        )
    return with_model


def evaluation_targets(train: mlflow.entities.Run) -> list[EvaluationTarget]:
    """The variants of a train run that have a model, in training order, to evaluate."""
    children = variant_runs(train)
    return [
        EvaluationTarget(
            child.data.tags["variant"],
            child.data.tags["model_uri"],
            child.info.run_id,
            {
                "train_accuracy": child.data.metrics.get("best_train_accuracy"),
                "val_accuracy": child.data.metrics.get("best_val_accuracy"),
                "val_auc": child.data.metrics.get("best_val_auc"),
                "pretrained": child.data.tags.get("pretrained"),
                "epochs": trained_epochs(child.info.run_id),
                "seconds": child.data.metrics.get("train_seconds"),
            },
        )
        for child in children
    ]


def trained_epochs(run_id: str) -> int:
    """Epochs the variant's model trained, from its leaderboard row (a tuned variant's
    epochs are its best trial's, not the variant run's own history)."""
    row = load_run_dict(run_id, ROW_FILE)
    if row is None:
        raise DatasetError(f"variant run {run_id} has a model but no {ROW_FILE}")
    return int(row["epochs"])
