"""The Model Registry side of the register step: candidates ranked by validation AUC
(found with mlflow.search_logged_models), idempotent registration, and the aliases
@champion, @challenger and @previous (never stages)."""

from __future__ import annotations

import mlflow
from mlflow.entities import LoggedModel
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from poster_ml.errors import DatasetError

RANKED_BY = "best_val_auc"


def model_metric(model: LoggedModel, key: str) -> float:
    values = [metric.value for metric in model.metrics or [] if metric.key == key]
    return values[-1] if values else float("-inf")


def best_candidate(train: mlflow.entities.Run, allow_cpu: bool) -> tuple[LoggedModel, mlflow.entities.Run, str]:
    """The train run's logged model with the best validation AUC, its variant run, and a
    note when a variant trained from random weights wins over one with pretrained weights.

    The test split never takes part in choosing.
    """
    client = MlflowClient()
    children = {run.info.run_id: run for run in client.search_runs([train.info.experiment_id], f"tags.`mlflow.parentRunId` = '{train.info.run_id}'")}
    models = [model for model in mlflow.search_logged_models(experiment_ids=[train.info.experiment_id], output_format="list") if model.source_run_id in children]
    eligible = [model for model in models if allow_cpu or children[model.source_run_id].data.tags.get("device") == "GPU"]
    if not eligible:
        raise DatasetError(f"train run {train.info.run_id} has no GPU-trained variant to register; train on a GPU, or pass --allow-cpu true")
    ranked = sorted(eligible, key=lambda model: model_metric(model, RANKED_BY), reverse=True)
    best, note = ranked[0], ""
    pretrained = [model for model in ranked if model.params.get("pretrained") == "True"]
    if best.params.get("pretrained") != "True" and pretrained:
        rival = pretrained[0]
        note = (f"chosen over the best variant with pretrained weights, {rival.name} (validation AUC "
                f"{model_metric(rival, RANKED_BY):.3f}), because its validation AUC is higher ({model_metric(best, RANKED_BY):.3f})")
    return best, children[best.source_run_id], note


def existing_version(name: str, model_id: str):
    """The version already registered from this logged model, if any."""
    try:
        versions = MlflowClient().search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    return next((version for version in versions if version.tags.get("source_model_id") == model_id), None)


def register(model: LoggedModel, run: mlflow.entities.Run, name: str) -> mlflow.entities.model_registry.ModelVersion:
    tags = {
        "variant": model.name,
        "source_model_id": model.model_id,
        "source_run": run.info.run_id,
        "ranked_by": RANKED_BY,
        "val_auc": f"{model_metric(model, RANKED_BY):.4f}",
        "device": run.data.tags.get("device", ""),
        "pretrained": str(model.params.get("pretrained") == "True").lower(),
        "dataset_digest": run.data.tags.get("dataset_digest", ""),
        "commit": run.data.tags.get("mlflow.source.git.commit", "unknown"),
    }
    return mlflow.register_model(model.model_uri, name, tags=tags)


def version_by_alias(name: str, alias: str):
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def promote(name: str, version: str, previous: str | None) -> None:
    """The new version becomes @champion; the one it replaces keeps @previous."""
    client = MlflowClient()
    if previous is not None:
        client.set_registered_model_alias(name, "previous", previous)
    client.set_registered_model_alias(name, "champion", version)


def keep_as_challenger(name: str, version: str, reason: str) -> None:
    client = MlflowClient()
    client.set_registered_model_alias(name, "challenger", version)
    client.update_model_version(name, version, description=reason)


def describe(name: str, version: str, text: str, tags: dict[str, str]) -> None:
    client = MlflowClient()
    if text:
        client.update_model_version(name, version, description=text)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
