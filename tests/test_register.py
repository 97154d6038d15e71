"""The register step: selection on validation only, one version per logged model, and a
champion that must beat the current one on the same test posters."""

from __future__ import annotations

import os

import mlflow
from mlflow.tracking import MlflowClient

from poster_ml.cli import main
from poster_ml.models.variants import VARIANTS, build_model
from poster_ml.tracking.pyfunc_model import log_poster_model


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input


def fake_train_run(variants: dict[str, dict], data_path: str = "") -> str:
    """A finished train run whose variant runs each log a model carrying the given
    validation AUC and pretrained flag (a real poster model where one is given)."""
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.set_experiment("poster-ml")
    with mlflow.start_run(run_name="train") as parent:
        mlflow.set_tags({"poster_ml.step": "train", "data_path": data_path})
        for name, facts in variants.items():
            with mlflow.start_run(run_name=name, nested=True):
                params = {"variant": name, "pretrained": facts.get("pretrained", "False")}
                if "keras" in facts:
                    info = log_poster_model(facts["keras"], facts["keras"].inputs[0].shape[1], {}, facts["example"], name=name, params=params)
                else:
                    info = mlflow.pyfunc.log_model(name=name, python_model=Constant(), params=params)
                mlflow.log_metrics({"best_val_auc": facts["val_auc"]}, model_id=info.model_id)
                mlflow.set_tags({"variant": name, "device": "CPU", "model_uri": info.model_uri})
    return parent.info.run_id


def champion_variant(name: str = "poster-ml") -> str:
    return MlflowClient().get_model_version_by_alias(name, "champion").tags["variant"]


def test_the_best_test_auc_is_not_registered_when_validation_ranks_another_first():
    train = fake_train_run({"best_on_test": {"val_auc": 0.70}, "best_on_validation": {"val_auc": 0.80}})
    assert main(["register", "--train-run", train, "--allow-cpu", "true"]) == 0
    version = MlflowClient().get_model_version_by_alias("poster-ml", "champion")
    assert version.tags["variant"] == "best_on_validation" and version.tags["ranked_by"] == "best_val_auc"


def test_a_randomly_initialised_winner_over_a_pretrained_model_says_why():
    train = fake_train_run({"vgg16_from_random_weights": {"val_auc": 0.75}, "vgg16_imagenet": {"val_auc": 0.70, "pretrained": "True"}})
    assert main(["register", "--train-run", train, "--allow-cpu", "true"]) == 0
    version = MlflowClient().get_model_version_by_alias("poster-ml", "champion")
    assert version.tags["pretrained"] == "false"
    assert "vgg16_imagenet" in version.description and "0.700" in version.description


def test_without_gpu_runs_and_without_allow_cpu_register_fails_with_one_line(capsys):
    train = fake_train_run({"basic_cnn": {"val_auc": 0.7}})
    assert main(["register", "--train-run", train]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "has no GPU-trained variant" in errors[0] and "--allow-cpu true" in errors[0]


def test_registering_the_same_run_twice_makes_no_second_version(capsys):
    train = fake_train_run({"basic_cnn": {"val_auc": 0.7}})
    assert main(["register", "--train-run", train, "--allow-cpu", "true"]) == 0
    assert main(["register", "--train-run", train, "--allow-cpu", "true"]) == 0
    assert "nothing to register" in capsys.readouterr().out
    assert len(MlflowClient().search_model_versions("name = 'poster-ml'")) == 1


def test_a_worse_model_stays_challenger_and_the_champion_keeps_its_alias(capsys, tmp_path):
    from poster_ml.config import AugmentConfig, PreprocessConfig, TrainConfig
    from poster_ml.data.images import encode_jpeg
    from poster_ml.data.prepare import prepare
    from poster_ml.models.fit import train_variant

    data = prepare(PreprocessConfig(count=600, size=64, out=str(tmp_path / "data"), seed=3))
    example = encode_jpeg(data.reader("validation").read([0])[0])
    trained = train_variant(VARIANTS["basic_cnn"], data, TrainConfig(max_epochs=8, weights="none"), AugmentConfig()).model
    good = fake_train_run({"basic_cnn": {"val_auc": 0.8, "keras": trained, "example": example}}, data_path=str(data.path))
    assert main(["register", "--train-run", good, "--allow-cpu", "true", "--bootstrap-samples", "200"]) == 0
    client = MlflowClient()
    champion = client.get_model_version_by_alias("poster-ml", "champion")
    # A model that says 0.5 for every poster, claiming a better validation AUC.
    constant = build_model(VARIANTS["basic_cnn"], 64)
    output = constant.get_layer("fresh_probability")
    output.set_weights([weight * 0 for weight in output.get_weights()])
    worse = fake_train_run({"constant": {"val_auc": 0.99, "keras": constant, "example": example}}, data_path=str(data.path))
    capsys.readouterr()
    assert main(["register", "--train-run", worse, "--allow-cpu", "true", "--bootstrap-samples", "200"]) == 0
    printed = capsys.readouterr().out
    challenger = client.get_model_version_by_alias("poster-ml", "challenger")
    assert client.get_model_version_by_alias("poster-ml", "champion").version == champion.version
    assert challenger.version != champion.version and "does not beat @champion" in challenger.description
    assert "stays @challenger" in printed and "95 % interval" in printed and "test AUC 0.500" in printed
    assert {"test_auc", "compared_with", "source_run", "dataset_digest", "commit", "device"} <= set(challenger.tags)
