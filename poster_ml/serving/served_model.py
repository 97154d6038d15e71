"""The model code MLflow logs (models-from-code): the pyfunc is rebuilt from source on load."""

import mlflow

from poster_ml.serving.model import PosterClassifier

mlflow.models.set_model(PosterClassifier())
