"""The register step selects on validation only; the test split never picks the winner."""

from __future__ import annotations

import os

import mlflow
from mlflow.tracking import MlflowClient

from poster_ml.cli import main


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def fake_train_run(variants: dict[str, dict]) -> str:
    """A train run whose variant runs carry the given metrics and tags, each with a model."""
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.set_experiment("poster-ml")
    with mlflow.start_run(run_name="train") as parent:
        mlflow.set_tags({"poster_ml.step": "train"})
        for name, facts in variants.items():
            with mlflow.start_run(run_name=name, nested=True):
                mlflow.log_metrics(facts["metrics"])
                info = mlflow.pyfunc.log_model(name=name, python_model=Constant())
                mlflow.set_tags({"variant": name, "device": "CPU", "model_uri": info.model_uri, "pretrained": facts.get("pretrained", "false")})
    return parent.info.run_id


def test_the_best_test_auc_is_not_registered_when_validation_ranks_another_first(capsys):
    train = fake_train_run({
        "best_on_test": {"metrics": {"best_val_auc": 0.70, "test_roc_auc": 0.90}},
        "best_on_validation": {"metrics": {"best_val_auc": 0.80, "test_roc_auc": 0.60}},
    })
    assert main(["register", "--train-run", train, "--require-gpu", "false"]) == 0
    version = MlflowClient().get_model_version_by_alias("poster-ml", "champion")
    assert version.tags["variant"] == "best_on_validation" and version.tags["ranked_by"] == "best_val_auc"


def test_a_randomly_initialised_winner_over_a_pretrained_run_says_why():
    train = fake_train_run({
        "vgg16_from_random_weights": {"metrics": {"best_val_auc": 0.75}, "pretrained": "false"},
        "vgg16_imagenet": {"metrics": {"best_val_auc": 0.70}, "pretrained": "true"},
    })
    assert main(["register", "--train-run", train, "--require-gpu", "false"]) == 0
    version = MlflowClient().get_model_version_by_alias("poster-ml", "champion")
    assert version.tags["pretrained"] == "false"
    assert "vgg16_imagenet" in version.description and "0.700" in version.description


def test_register_refuses_cpu_trained_runs_unless_told(capsys):
    train = fake_train_run({"basic_cnn": {"metrics": {"best_val_auc": 0.7}}})
    assert main(["register", "--train-run", train]) == 1
    assert "has no GPU-trained variant" in capsys.readouterr().err
