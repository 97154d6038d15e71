"""The Model Registry side of the register step: candidates ranked by validation AUC
(variant runs ranked by their best validation AUC, each run's logged model taken by
its id), idempotent registration, and the registered versions' descriptions and tags.
The gate (steps/register.py) gives the aliases @champion, @challenger and @previous
(never stages)."""

from __future__ import annotations

import mlflow
from mlflow.entities import LoggedModel
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from poster_ml.errors import DatasetError
from poster_ml.evaluation.metrics import ranked_by_validation_auc
from poster_ml.tracking import schema

RANKED_BY = "best_val_auc"
GATE = "gate"  # The version tag the gate sets last: champion or challenger.


def best_candidate(
    train: mlflow.entities.Run, allow_cpu: bool
) -> tuple[LoggedModel, mlflow.entities.Run, str]:
    """The model of the train run's variant run with the best validation AUC, that run,
    and a note when a variant trained from random weights wins over one with pretrained
    weights. A variant run's model is the one its `model_uri` tag names (a tuned variant's
    lives on its best trial's run). The test split never takes part in choosing.
    """
    from poster_ml.tracking.logged_models import variant_runs

    children = variant_runs(train)
    eligible = [run for run in children if allow_cpu or run.data.tags.get("device") == "GPU"]
    if not eligible:
        raise DatasetError(
            f"train run {train.info.run_id} has no GPU-trained variant to register; train on a GPU, or pass --allow-cpu true"
        )
    ranked = ranked_by_validation_auc(eligible, lambda run: run.data.metrics.get(RANKED_BY))
    best, note = ranked[0], ""
    pretrained = [run for run in ranked if run.data.tags.get("pretrained") == "true"]
    if best.data.tags.get("pretrained") != "true" and pretrained:
        rival = pretrained[0]
        note = (
            f"chosen over the best variant with pretrained weights, {rival.data.tags['variant']} (validation AUC "
            f"{rival.data.metrics[RANKED_BY]:.3f}), because its validation AUC is higher ({best.data.metrics[RANKED_BY]:.3f})"
        )
    return mlflow.get_logged_model(best.data.tags["model_uri"].removeprefix("models:/")), best, note


def existing_version(name: str, model_id: str):
    """The version already registered from this logged model, if any."""
    try:
        versions = MlflowClient().search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    # MLflow's own fields say which logged model a version came from: `model_id`, which its
    # SQL store leaves empty (MLflow 3.17), and `source`, the models:/ URI it was made from.
    return next(
        (
            version
            for version in versions
            if model_id in (version.model_id, (version.source or "").removeprefix("models:/"))
        ),
        None,
    )


def register(
    model: LoggedModel, run: mlflow.entities.Run, name: str
) -> mlflow.entities.model_registry.ModelVersion:
    tags = {
        "variant": model.name,
        "source_run": run.info.run_id,
        "ranked_by": RANKED_BY,
        "val_auc": f"{run.data.metrics.get(RANKED_BY, float('nan')):.4f}",
        "device": run.data.tags.get("device", ""),
        "pretrained": str(model.params.get("pretrained") == "True").lower(),
        schema.DIGEST_TAG: schema.digest_of(run),
        "commit": run.data.tags.get("mlflow.source.git.commit", "unknown"),
    }
    return mlflow.register_model(model.model_uri, name, tags=tags)


def served_version_facts(model_uri: str) -> dict[str, str]:
    """What the served page says of a registered version named by models:/<name>@<alias> or
    models:/<name>/<version>: which one, its test AUC with interval and its known limits in
    one line. Nothing for any other kind of URI (a logged model, a run, a folder)."""
    reference = model_uri.removeprefix("models:/") if model_uri.startswith("models:/") else ""
    name, alias = reference.split("@", 1) if "@" in reference else (reference, "")
    name, _, number = name.partition("/")
    client = MlflowClient()
    try:
        if alias:
            version = client.get_model_version_by_alias(name, alias)
        elif number:
            version = client.get_model_version(name, number)
        else:
            return {}
    except MlflowException:
        return {}
    tags = version.tags
    keys = ("variant", "test_auc", "test_auc_low", "test_auc_high", "test_posters", "known_limits")
    return {"name": name, "version": str(version.version)} | {
        ("limits" if key == "known_limits" else key): tags[key] for key in keys if key in tags
    }


def version_by_alias(name: str, alias: str):
    try:
        return MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def describe(name: str, version: str, text: str, tags: dict[str, str]) -> None:
    client = MlflowClient()
    if text:
        client.update_model_version(name, version, description=text)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
