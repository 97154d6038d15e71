"""The register step: the best variant of a train run into the Model Registry."""

from __future__ import annotations

from poster_ml.config import RegisterConfig
from poster_ml.tracking import runs
from poster_ml.tracking.registry import register_best


def register_step(config: RegisterConfig):
    with runs.step_run("register", {"register": config}, seed=0):
        version = register_best(config)
        runs.set_tags({"registered_model": config.model_name, "registered_version": str(version.version)})
    print(f"registered {config.model_name} version {version.version} ({version.tags.get('variant')}, {version.tags.get('ranked_by')} {float(version.tags.get('score')):.3f}) as @{config.alias}")
    print(f"serve it with: mlflow models serve -m models:/{config.model_name}@{config.alias} --env-manager local")
    return version
