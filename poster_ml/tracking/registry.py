"""The register step's work: the best variant of a train run into the Model Registry.

Variants are ranked by their best-epoch validation AUC only. The test split never takes
part in choosing: it is read once, by evaluate, to report.
"""

from __future__ import annotations

import mlflow
from mlflow.tracking import MlflowClient

from poster_ml.config import RegisterConfig
from poster_ml.errors import DatasetError
from poster_ml.tracking.runs import find_train_run

RANKED_BY = "best_val_auc"


def best_variant_run(config: RegisterConfig) -> tuple[mlflow.entities.Run, str]:
    """The variant run with the best validation AUC, and a note on what it was chosen over.

    A pretrained architecture trained from random weights is never chosen over a run
    with real pretrained weights without the note saying so.
    """
    client = MlflowClient()
    train = find_train_run(config.train_run)
    children = client.search_runs([train.info.experiment_id], f"tags.`mlflow.parentRunId` = '{train.info.run_id}'")
    candidates = [run for run in children if "model_uri" in run.data.tags and (run.data.tags.get("device") == "GPU" or not config.require_gpu)]
    if not candidates:
        raise DatasetError(f"train run {train.info.run_id} has no GPU-trained variant; train on a GPU or pass --require-gpu false")
    ranked = sorted(candidates, key=lambda run: run.data.metrics.get(RANKED_BY, float("-inf")), reverse=True)
    best, note = ranked[0], ""
    pretrained = [run for run in ranked if run.data.tags.get("pretrained") == "true"]
    if best.data.tags.get("pretrained") != "true" and pretrained:
        rival = pretrained[0]
        note = (f"chosen over the best variant with pretrained weights, {rival.data.tags['variant']} "
                f"(validation AUC {rival.data.metrics.get(RANKED_BY, float('nan')):.3f}), because its validation AUC is higher")
    return best, note


def register_best(config: RegisterConfig) -> mlflow.entities.model_registry.ModelVersion:
    run, note = best_variant_run(config)
    tags = {
        "variant": run.data.tags["variant"],
        "ranked_by": RANKED_BY,
        "score": str(run.data.metrics[RANKED_BY]),
        "device": run.data.tags.get("device", ""),
        "pretrained": run.data.tags.get("pretrained", "false"),
        "dataset_digest": run.data.tags.get("dataset_digest", ""),
        "source_run": run.info.run_id,
    }
    version = mlflow.register_model(run.data.tags["model_uri"], config.model_name, tags=tags)
    client = MlflowClient()
    if note:
        client.update_model_version(config.model_name, version.version, description=note)
        print(note)
    client.set_registered_model_alias(config.model_name, config.alias, version.version)
    return version
