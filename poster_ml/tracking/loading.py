"""Loading logged poster models back: their files for a server, or the Keras model and its
settings inside the pyfunc for evaluation and batch prediction."""

from __future__ import annotations

import mlflow
from mlflow.exceptions import MlflowException

from poster_ml.errors import DatasetError


def download_model(model_uri: str, folder: str) -> str:
    """The logged model's files in a local folder, for a server to load."""
    try:
        return mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder)
    except (MlflowException, OSError) as error:
        raise DatasetError(f"cannot load model {model_uri}: {str(error).splitlines()[0]}") from error


def load_poster_model(model_uri: str):
    """The Keras model inside a logged poster pyfunc, and its settings (image size, threshold)."""
    try:
        wrapper = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    except (MlflowException, OSError) as error:
        raise DatasetError(f"cannot load model {model_uri}: {str(error).splitlines()[0]}") from error
    return wrapper.model, wrapper.settings


def load_keras_model(model_uri: str):
    """The Keras model inside a logged poster pyfunc."""
    return load_poster_model(model_uri)[0]


def model_id(model_uri: str) -> str | None:
    """The logged model's id behind any model URI (models:/m-..., models:/name@alias, runs:/...)."""
    try:
        return mlflow.models.get_model_info(model_uri).model_id
    except (MlflowException, OSError):
        return None
