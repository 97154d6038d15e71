"""The register step: selection on validation only, one version per logged model, a first
champion only above chance, a champion that must beat the current one on test posters
neither model saw, and a gate that an interrupted register finishes."""

from __future__ import annotations

import os

import keras
import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from poster_ml.cli import main
from poster_ml.config import PreprocessConfig
from poster_ml.data.images import InputContract, encode_jpeg
from poster_ml.data.prepare import prepare
from poster_ml.evaluation.comparison import paired_auc_comparison
from poster_ml.models.predict import predict_test_split
from poster_ml.models.variants import VARIANTS, build_model
from poster_ml.serving.model import log_poster_model
from poster_ml.steps import register as register_module


@pytest.fixture
def posters(trained_cnn):
    """Prepared posters and a basic CNN trained on them well beyond chance (conftest.py's
    trained_cnn, shared with the CAM tests)."""
    model, data = trained_cnn
    return data, model


def constant_model(size: int) -> keras.Model:
    """A model that says 0.5 for every poster."""
    model = build_model(VARIANTS["basic_cnn"], size)
    output = model.get_layer("fresh_probability")
    output.set_weights([weight * 0 for weight in output.get_weights()])
    return model


def fake_train_run(data, variants: dict[str, dict], digest: str | None = None) -> str:
    """A finished train run whose variant runs each log a Keras poster model carrying the
    given validation AUC and pretrained flag, trained (as its tags say) on `data`."""
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.set_experiment("poster-ml")
    example = encode_jpeg(data.reader("validation").read([0])[0])
    with mlflow.start_run(run_name="train") as parent:
        mlflow.set_tags(
            {"poster_ml.step": "train", "data_path": str(data.path), "dataset_digest": data.digest}
        )
        for name, facts in variants.items():
            with mlflow.start_run(run_name=name, nested=True):
                params = {"variant": name, "pretrained": facts.get("pretrained", "False")}
                info = log_poster_model(
                    facts.get("keras") or constant_model(data.image_size),
                    InputContract.of_dataset(data.info),
                    {},
                    example,
                    name=name,
                    params=params,
                )
                mlflow.log_metrics({"best_val_auc": facts["val_auc"]}, model_id=info.model_id)
                mlflow.set_tags(
                    {
                        "variant": name,
                        "device": "CPU",
                        "model_uri": info.model_uri,
                        "dataset_digest": digest or data.digest,
                        "pretrained": facts.get("pretrained", "False").lower(),
                    }
                )
    return parent.info.run_id


def register(train: str, *extra: str) -> int:
    return main(
        [
            "register",
            "--train-run",
            train,
            "--allow-cpu",
            "true",
            "--bootstrap-samples",
            "200",
            *extra,
        ]
    )


def alias(name: str):
    return MlflowClient().get_model_version_by_alias("poster-ml", name)


def test_validation_chooses_even_when_another_variant_is_better_on_test(posters):
    data, trained = posters
    labels = data.labels("test")
    # The trained CNN is far better on test than the constant model, which claims the
    # better validation AUC: validation decides, the test split takes no part.
    assert roc_auc_score(labels, predict_test_split(trained, data)) > 0.7
    train = fake_train_run(
        data,
        {
            "best_on_test": {"val_auc": 0.70, "keras": trained},
            "best_on_validation": {"val_auc": 0.80},
        },
    )
    assert register(train) == 0
    (version,) = MlflowClient().search_model_versions("name = 'poster-ml'")
    assert (
        version.tags["variant"] == "best_on_validation"
        and version.tags["ranked_by"] == "best_val_auc"
    )


def test_the_first_version_is_champion_only_above_chance(posters, capsys):
    data, trained = posters
    assert register(fake_train_run(data, {"constant": {"val_auc": 0.9}})) == 0
    first = alias("challenger")
    assert "no better than chance" in first.description and first.tags["gate"] == "challenger"
    assert float(first.tags["test_auc"]) == pytest.approx(0.5)
    # A real model next: the constant is no champion, so it is compared with nothing.
    assert register(fake_train_run(data, {"basic_cnn": {"val_auc": 0.8, "keras": trained}})) == 0
    champion = alias("champion")
    assert (
        champion.tags["variant"] == "basic_cnn" and "is the first @champion" in champion.description
    )
    assert float(champion.tags["test_auc"]) > 0.7


def test_a_better_model_is_promoted_and_the_old_champion_becomes_previous(posters, capsys):
    data, trained = posters
    assert register(fake_train_run(data, {"constant": {"val_auc": 0.7}})) == 0
    first = alias("challenger")
    # Setup: make the constant model the champion, as an older gate might have.
    MlflowClient().set_registered_model_alias("poster-ml", "champion", first.version)
    capsys.readouterr()
    assert register(fake_train_run(data, {"basic_cnn": {"val_auc": 0.8, "keras": trained}})) == 0
    champion = alias("champion")
    assert champion.tags["variant"] == "basic_cnn" and alias("previous").version == first.version
    assert (
        champion.tags["compared_with"] == str(first.version) and champion.tags["gate"] == "champion"
    )
    assert "is the new @champion" in capsys.readouterr().out


def test_a_worse_model_stays_challenger_and_the_champion_keeps_its_alias(posters, capsys):
    data, trained = posters
    assert register(fake_train_run(data, {"basic_cnn": {"val_auc": 0.8, "keras": trained}})) == 0
    champion = alias("champion")
    capsys.readouterr()
    assert register(fake_train_run(data, {"constant": {"val_auc": 0.99}})) == 0
    printed = capsys.readouterr().out
    challenger = alias("challenger")
    assert alias("champion").version == champion.version
    assert (
        challenger.version != champion.version
        and "does not beat @champion" in challenger.description
    )
    assert (
        "stays @challenger" in printed
        and "95 % interval" in printed
        and "test AUC 0.500" in printed
    )
    assert {
        "test_auc",
        "compared_with",
        "compared_posters",
        "source_run",
        "dataset_digest",
        "commit",
        "device",
        "gate",
    } <= set(challenger.tags)


def test_a_champion_from_other_data_is_compared_only_on_posters_neither_model_saw(
    posters, tmp_path
):
    data, trained = posters
    assert register(fake_train_run(data, {"basic_cnn": {"val_auc": 0.8, "keras": trained}})) == 0
    # More posters from the same generator: the first 600 are among them, so some of the
    # new test posters were training or validation posters of the champion.
    more = prepare(PreprocessConfig(count=900, size=64, out=str(tmp_path / "more"), seed=3))
    seen = set(data.manifest[data.manifest["split"] != "test"]["sha256"])
    unseen = int((~more.split("test")["sha256"].isin(seen)).sum())
    assert 0 < unseen < len(more.split("test"))
    client = MlflowClient()
    # The champion's run records the posters it saw (train logs seen_posters.json).
    source = alias("champion").tags["source_run"]
    client.log_dict(
        source, {"dataset_digest": data.digest, "sha256": sorted(seen)}, "seen_posters.json"
    )
    client.set_model_version_tag(
        "poster-ml", alias("champion").version, "dataset_digest", data.digest
    )
    assert register(fake_train_run(more, {"constant": {"val_auc": 0.9}})) == 0
    version = alias("challenger")
    assert (
        version.tags["compared_posters"] == str(unseen)
        and f"on {unseen} test posters that neither model saw" in version.description
    )


def test_a_candidate_on_other_data_than_it_trained_on_is_refused_in_one_line(posters, capsys):
    data, trained = posters
    train = fake_train_run(data, {"basic_cnn": {"val_auc": 0.8, "keras": trained}}, digest="f" * 64)
    assert register(train) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert (
        len(errors) == 1
        and "trained on dataset ffffffffffff" in errors[0]
        and "--data" in errors[0]
    )


def test_a_register_that_died_after_creating_the_version_finishes_the_gate(posters, monkeypatch):
    data, trained = posters
    train = fake_train_run(data, {"basic_cnn": {"val_auc": 0.8, "keras": trained}})
    real = register_module.gate

    def dies(*arguments, **keywords):
        raise KeyboardInterrupt

    monkeypatch.setattr(register_module, "gate", dies)
    with pytest.raises(KeyboardInterrupt):
        register(train)
    (version,) = MlflowClient().search_model_versions("name = 'poster-ml'")
    assert "gate" not in version.tags
    monkeypatch.setattr(register_module, "gate", real)
    assert register(train) == 0
    (version,) = MlflowClient().search_model_versions("name = 'poster-ml'")
    assert version.tags["gate"] == "champion" and alias("champion").version == version.version
    assert register(train) == 0  # Gated now: nothing more to do.
    assert len(MlflowClient().search_model_versions("name = 'poster-ml'")) == 1


def test_a_randomly_initialised_winner_over_a_pretrained_model_says_why(posters):
    data, trained = posters
    train = fake_train_run(
        data,
        {
            "vgg16_from_random_weights": {"val_auc": 0.75, "keras": trained},
            "vgg16_imagenet": {"val_auc": 0.70, "pretrained": "True"},
        },
    )
    assert register(train) == 0
    version = alias("champion")
    assert version.tags["pretrained"] == "false"
    assert "vgg16_imagenet" in version.description and "0.700" in version.description


def test_without_gpu_runs_and_without_allow_cpu_register_fails_with_one_line(posters, capsys):
    data, _ = posters
    train = fake_train_run(data, {"basic_cnn": {"val_auc": 0.7}})
    assert main(["register", "--train-run", train]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert (
        len(errors) == 1
        and "has no GPU-trained variant" in errors[0]
        and "--allow-cpu true" in errors[0]
    )


def test_a_train_run_without_variant_models_fails_with_one_line(capsys):
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.set_experiment("poster-ml")
    with mlflow.start_run(run_name="train") as parent:
        mlflow.set_tag("poster_ml.step", "train")
    for step in ("register", "evaluate"):
        assert main([step, "--train-run", parent.info.run_id]) == 1
        errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
        assert (
            len(errors) == 1
            and parent.info.run_id in errors[0]
            and "has no variant with a model" in errors[0]
        )


def test_paired_comparison_matches_a_hand_computed_case():
    labels = np.array([0, 0, 1, 1])
    new = np.array([0.1, 0.2, 0.8, 0.9])  # Every fresh poster above every rotten one: AUC 1.
    old = np.array(
        [0.1, 0.9, 0.8, 0.2]
    )  # Pairs (rotten, fresh): (0.1,0.8) (0.1,0.2) right, (0.9,..) wrong: AUC 2/4.
    comparison = paired_auc_comparison(labels, new, old, samples=200, seed=0)
    assert comparison.new_auc == 1.0 and comparison.old_auc == 0.5 and comparison.difference == 0.5
    assert comparison.low <= 0.5 <= comparison.high


def test_the_registered_model_carries_a_model_card(posters):
    data, trained = posters
    assert register(fake_train_run(data, {"basic_cnn": {"val_auc": 0.8, "keras": trained}})) == 0
    card = MlflowClient().get_registered_model("poster-ml").description
    champion = alias("champion")
    assert (
        "probability that the film is **fresh**" in card
        and card.count("curl -s localhost:5001/invocations") == 4
    )
    for kind in ("dataframe_split", "dataframe_records", "inputs", "instances"):
        assert f'"{kind}"' in card
    assert (
        data.digest[:12] in card
        and "synthetic posters" in card
        and f"Version {champion.version} (basic_cnn)" in card
    )
    assert (
        f"test AUC {champion.tags['test_auc']} (95 % interval {champion.tags['test_auc_low']} to {champion.tags['test_auc_high']})"
        in card
    )
    assert "trained on a CPU" in card and "no ImageNet weights" in card
