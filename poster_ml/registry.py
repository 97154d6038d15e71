"""The register step: the best GPU-trained variant of a train run into the Model Registry."""

from __future__ import annotations

import mlflow
from mlflow.tracking import MlflowClient

from poster_ml.config import RegisterConfig
from poster_ml.errors import DatasetError
from poster_ml.tracking import find_train_run


def best_variant_run(config: RegisterConfig) -> tuple[mlflow.entities.Run, str]:
    """The variant run with the best score, and the metric that ranked it.

    Test ROC AUC ranks the variants once `evaluate` has run, validation AUC before.
    """
    client = MlflowClient()
    train = find_train_run(config.train_run)
    children = client.search_runs([train.info.experiment_id], f"tags.`mlflow.parentRunId` = '{train.info.run_id}'")
    candidates = [run for run in children if "model_uri" in run.data.tags and (run.data.tags.get("device") == "GPU" or not config.require_gpu)]
    if not candidates:
        raise DatasetError(f"train run {train.info.run_id} has no GPU-trained variant; train on a GPU or pass --require-gpu false")
    metric = "test_roc_auc" if all("test_roc_auc" in run.data.metrics for run in candidates) else "best_val_auc"
    return max(candidates, key=lambda run: run.data.metrics.get(metric, float("-inf"))), metric


def register_best(config: RegisterConfig) -> mlflow.entities.model_registry.ModelVersion:
    run, metric = best_variant_run(config)
    version = mlflow.register_model(run.data.tags["model_uri"], config.model_name, tags={"variant": run.data.tags["variant"], "ranked_by": metric, "score": str(run.data.metrics[metric]), "device": run.data.tags.get("device", "")})
    MlflowClient().set_registered_model_alias(config.model_name, config.alias, version.version)
    return version
