"""The train step end to end on a shrunken config: runs, metrics, curves, a model that serves."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server
from mlflow.tracking import MlflowClient

from poster_ml.cli import main
from poster_ml.config import AugmentConfig, TrainConfig, train_config
from poster_ml.data.prepared import load_prepared
from poster_ml.devices import device_info
from poster_ml.errors import ConfigError
from poster_ml.models.feature_cache import cached_features, feature_cache_dir
from poster_ml.models.fit import train_variant
from poster_ml.models.variants import VARIANTS, build_model


def test_train_logs_one_parent_and_a_nested_run_per_variant(trained_store):
    store, data = trained_store
    client = MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if r.data.tags.get("poster_ml.step") == "train"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1 and sorted(r.data.tags["variant"] for r in children) == [
        "basic_cnn",
        "vgg16_features",
    ]
    parent = parents[0]
    assert (
        parent.data.params["train.max_epochs"] == "2"
        and parent.data.params["augment.rotation_degrees"] == "50.0"
    )
    # The tags say what this machine has, whichever it is.
    machine = device_info()
    assert (
        parent.data.tags["device"] == machine["device"]
        and parent.data.tags["gpu_count"] == machine["gpu_count"]
    )
    assert parent.data.tags["dataset_digest"] == load_prepared(data).digest
    assert {"leaderboard.md", "leaderboard.json", "config.json"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)
    }
    for child in children:
        for metric in (
            "loss",
            "accuracy",
            "auc",
            "val_loss",
            "val_accuracy",
            "val_auc",
            "learning_rate",
            "epoch_seconds",
            "images_per_second",
        ):
            assert len(client.get_metric_history(child.info.run_id, metric)) == 2, metric
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert (
            f"curves_{child.data.tags['variant']}.png" in artifacts
            and "model_summary.txt" in artifacts
        )
        assert (
            child.data.tags["pretrained"] == "false"
            and child.data.tags["keras_version"] == keras.__version__
        )


def test_a_train_run_logs_system_metrics_unless_switched_off(trained_store, monkeypatch):
    from poster_ml.tracking.runs import system_metrics

    store, _ = trained_store
    client = MlflowClient(store)
    parent = next(
        r
        for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
        if r.data.tags.get("poster_ml.step") == "train"
    )
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(
        parent.data.metrics
    )
    assert (
        system_metrics("train") and system_metrics("evaluate") and not system_metrics("preprocess")
    )
    monkeypatch.setenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    assert not system_metrics("train")


def test_parent_run_has_the_prepared_dataset_as_input(trained_store):
    store, data = trained_store
    client = MlflowClient(store)
    parent = next(
        r
        for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
        if r.data.tags.get("poster_ml.step") == "train"
    )
    inputs = parent.inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.digest in parent.data.tags["dataset_digest"]
    assert (data / "dataset.json").is_file()


def test_train_on_an_empty_default_folder_runs_preprocess_first_and_names_that_run(
    trained_store,
):
    store, data = trained_store
    client = MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    (preprocess,) = [r for r in runs if r.data.tags.get("poster_ml.step") == "preprocess"]
    (train,) = [r for r in runs if r.data.tags.get("poster_ml.step") == "train"]
    # What main would run: the quick profile's synthetic default, at the default folder.
    assert preprocess.data.params["size"] == "75" and preprocess.data.params["count"] == "400"
    assert train.data.tags["data_uri"] == f"runs:/{preprocess.info.run_id}/prepared"
    assert Path(preprocess.data.tags["data_path"]) == data.resolve()


def test_logged_model_serves_a_real_jpeg_file(trained_store):
    store, data = trained_store
    mlflow.set_tracking_uri(store)
    client = MlflowClient(store)
    child = next(
        r
        for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
        if r.data.tags.get("variant") == "basic_cnn"
    )
    model_uri = next(
        m
        for m in client.search_logged_models([child.info.experiment_id])
        if m.source_run_id == child.info.run_id
    ).model_uri
    model = mlflow.pyfunc.load_model(model_uri)
    jpeg = next((data / "synthetic" / "images").glob("*.jpg")).read_bytes()
    prediction = model.predict(pd.DataFrame({"image": [jpeg, base64.b64encode(jpeg).decode()]}))
    assert list(prediction.columns) == ["probability_fresh", "label"]
    assert ((prediction["probability_fresh"] >= 0) & (prediction["probability_fresh"] <= 1)).all()
    assert prediction["probability_fresh"].iloc[0] == pytest.approx(
        prediction["probability_fresh"].iloc[1]
    )
    assert set(prediction["label"]) <= {"fresh", "rotten"}
    with pytest.raises(MlflowException, match="image 0"):
        model.predict(pd.DataFrame({"image": [b"not a poster"]}))


def test_scoring_server_answers_a_bad_poster_with_400_and_a_short_json_error(trained_store):
    store, data = trained_store
    mlflow.set_tracking_uri(store)
    client = MlflowClient(store)
    child = next(
        r
        for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
        if r.data.tags.get("variant") == "basic_cnn"
    )
    model = mlflow.pyfunc.load_model(child.data.tags["model_uri"])
    jpeg = next((data / "synthetic" / "images").glob("*.jpg")).read_bytes()

    def post(*values):
        body = json.dumps(
            {"dataframe_split": {"columns": ["image"], "data": [[value] for value in values]}}
        )
        # The request handling of `mlflow models serve`, without the HTTP socket.
        return scoring_server.invocations(
            body, "application/json", model, model.metadata.get_input_schema()
        )

    good = post(base64.b64encode(jpeg).decode())
    assert good.status == 200
    assert 0 <= json.loads(good.response)["predictions"][0]["probability_fresh"] <= 1
    # The server turns this exception into its HTTP status and JSON body.
    with pytest.raises(MlflowException) as caught:
        post(base64.b64encode(jpeg).decode(), base64.b64encode(b"not a poster").decode())
    assert caught.value.get_http_status_code() == 400
    error = json.loads(caught.value.serialize_as_json())
    assert (
        error["error_code"] == "INVALID_PARAMETER_VALUE"
        and "image 1: not an image" in error["message"]
    )
    assert len(caught.value.serialize_as_json()) < 1000


def test_feature_cache_is_computed_once_and_keyed(synthetic_dataset, tmp_path):
    variant = VARIANTS["vgg16_features"]
    model = build_model(variant, synthetic_dataset.image_size, weights="none")
    extractor = keras.Model(model.input, model.get_layer("flatten").input)
    cache = feature_cache_dir(synthetic_dataset, extractor, variant.base, "none", 42, str(tmp_path))
    first = cached_features(extractor, synthetic_dataset, "validation", cache, 32)
    stamp = first.path.stat().st_mtime_ns
    again = cached_features(extractor, synthetic_dataset, "validation", cache, 32)
    assert again.path.stat().st_mtime_ns == stamp and len(again) == len(
        synthetic_dataset.split("validation")
    )
    expected = keras.ops.convert_to_numpy(
        extractor(synthetic_dataset.reader("validation").read(np.arange(4)).astype("float32"))
    )
    np.testing.assert_allclose(again.read(np.arange(4)), expected, rtol=1e-4, atol=1e-4)
    assert (
        feature_cache_dir(synthetic_dataset, extractor, variant.base, "imagenet", 42, str(tmp_path))
        != cache
    )
    # Random weights depend on the seed; ImageNet weights do not.
    assert (
        feature_cache_dir(synthetic_dataset, extractor, variant.base, "none", 7, str(tmp_path))
        != cache
    )
    imagenet = feature_cache_dir(
        synthetic_dataset, extractor, variant.base, "imagenet", 42, str(tmp_path)
    )
    assert (
        feature_cache_dir(synthetic_dataset, extractor, variant.base, "imagenet", 7, str(tmp_path))
        == imagenet
    )
    # A weights file is known by its content.
    weights_file = tmp_path / "base.weights.h5"
    weights_file.write_bytes(b"one")
    from_file = feature_cache_dir(
        synthetic_dataset, extractor, variant.base, str(weights_file), 42, str(tmp_path)
    )
    weights_file.write_bytes(b"two")
    assert (
        feature_cache_dir(
            synthetic_dataset, extractor, variant.base, str(weights_file), 42, str(tmp_path)
        )
        != from_file
    )
    # A base with trainable layers computes other features than the frozen one.
    extractor.layers[-2].trainable = True
    assert (
        feature_cache_dir(synthetic_dataset, extractor, variant.base, "none", 42, str(tmp_path))
        != cache
    )
    extractor.layers[-2].trainable = False
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        assert (
            feature_cache_dir(synthetic_dataset, extractor, variant.base, "none", 42, str(tmp_path))
            != cache
        )
    finally:
        keras.config.set_dtype_policy("float32")


def test_training_is_reproducible_under_a_seed(synthetic_dataset):
    def history(seed):
        config = TrainConfig(max_epochs=2, weights="none", seed=seed, batch_size=16)
        return (
            train_variant(
                VARIANTS["regularized_cnn_aug"], synthetic_dataset, config, AugmentConfig()
            )
            .history[["loss", "val_loss", "val_auc"]]
            .to_numpy()
        )

    np.testing.assert_array_equal(history(1), history(1))
    assert not np.array_equal(history(1), history(2))


def test_profiles_and_overrides_are_strict():
    quick = train_config("quick", {"max_epochs": "3"})
    assert quick.weights == "auto" and quick.trials == 3 and quick.max_epochs == 3
    assert train_config("full", {}).weights == "imagenet"
    with pytest.raises(ConfigError, match="unknown profile"):
        train_config("fast", {})
    with pytest.raises(ConfigError, match="unknown setting"):
        train_config("quick", {"epochz": "3"})
    with pytest.raises(ConfigError, match="must be int"):
        train_config("quick", {"batch_size": "big"})


def test_train_never_writes_into_a_folder_that_is_not_a_prepared_dataset(capsys, tmp_path):
    (tmp_path / "my_posters").mkdir()
    (tmp_path / "my_posters" / "keep.jpg").write_bytes(b"precious")
    assert main(["train", "--profile", "quick", "--data", str(tmp_path / "my_posters")]) == 1
    assert "is not a prepared dataset" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "my_posters").iterdir()] == ["keep.jpg"]


def test_an_explicit_data_folder_without_a_prepared_dataset_is_an_error_not_synthetic_posters(
    capsys, tmp_path
):
    typo = tmp_path / "my_postres"
    assert main(["train", "--profile", "quick", "--data", str(typo)]) == 1
    error = capsys.readouterr().err.strip()
    assert (
        "holds no prepared dataset" in error
        and "poster-ml preprocess" in error
        and len(error.splitlines()) == 1
    )
    assert not typo.exists()


def test_unknown_override_exits_with_one_line(capsys, tmp_path):
    assert (
        main(["train", "--profile", "quick", "--data", str(tmp_path), "--overrides", "rotation=5"])
        == 1
    )
    assert "unknown setting 'rotation'" in capsys.readouterr().err


def test_an_unfreeze_override_on_the_cached_features_variant_is_an_error_not_ignored(
    synthetic_dataset,
):
    config = TrainConfig(max_epochs=1, weights="none", unfreeze_blocks=2)
    with pytest.raises(ConfigError, match="unfreeze_blocks=2 cannot apply to vgg16_features"):
        train_variant(VARIANTS["vgg16_features"], synthetic_dataset, config, AugmentConfig())


def test_each_trained_variant_leaves_no_custom_gradient_graphs_behind(synthetic_dataset):
    from poster_ml.models.session import CUSTOM_GRADIENT_PREFIX, gradient_registry

    def registered() -> set[str]:
        return {name for name in gradient_registry() if name.startswith(CUSTOM_GRADIENT_PREFIX)}

    before = registered()
    assert (
        main(
            [
                "train",
                "--profile",
                "quick",
                "--data",
                str(synthetic_dataset.path),
                "--variants",
                "basic_cnn,regularized_cnn",
                "--trials",
                "0",
                "--overrides",
                "max_epochs=1 batch_size=32",
            ]
        )
        == 0
    )
    assert registered() == before


def test_the_default_profile_says_what_it_chose_and_a_long_full_training_says_how_long(
    monkeypatch, capsys
):
    """`train` with no profile on a machine without a GPU takes the quick one and says so
    first; the full profile on a CPU times each variant first and announces a training
    longer than an hour with its estimate (here the hour is made 0 s, the training tiny),
    and a shorter one says nothing."""
    from helpers import prepare_tiny

    from poster_ml.models import estimate

    prepare_tiny()
    capsys.readouterr()
    tiny = ["--variants", "basic_cnn", "--trials", "0", "--overrides", "max_epochs=1"]
    assert main(["train", *tiny]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("profile auto: no GPU here, so the quick profile (")
    assert not any("this training will take about" in line for line in printed)
    data, variants = load_prepared("data/prepared"), [VARIANTS["basic_cnn"]]
    quick = TrainConfig(max_epochs=1)
    estimate.announce_long_training(variants, data, quick, "full")
    assert "will take" not in capsys.readouterr().out  # Seconds, not hours.
    monkeypatch.setattr(estimate, "LONG_SECONDS", 0.0)
    estimate.announce_long_training(variants, data, quick, "quick")
    assert "will take" not in capsys.readouterr().out  # Only the full profile is timed.
    assert main(["train", "--profile", "full", "--restart", "true", *tiny]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "will take" in line)
    assert line.startswith("this training will take about 0.0 h on this machine, measured on")
    assert "basic_cnn the longest" in line and "-P profile=quick" in line
