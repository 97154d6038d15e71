"""Every variant builds, trains a step, keeps its CAM layer reachable; pretrained weights load."""

from __future__ import annotations

import urllib.error

import keras
import numpy as np
import pytest

from poster_ml.cli import main
from poster_ml.errors import ConfigError, WeightsUnavailableError
from poster_ml.models.variants import (
    VARIANTS,
    build_model,
    dense_head,
    get_variants,
    head_first_layer,
)

TINY = 75  # The smallest input the Inception bases accept.


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_builds_and_trains_one_step(name):
    variant = VARIANTS[name]
    keras.utils.set_random_seed(0)
    model = build_model(variant, TINY, weights="none")
    model.compile(optimizer="rmsprop", loss="binary_crossentropy")
    images = np.random.default_rng(0).uniform(0, 255, (4, TINY, TINY, 3)).astype("float32")
    labels = np.array([0, 1, 0, 1], dtype="float32")
    loss = model.train_on_batch(images, labels)
    assert np.isfinite(loss)
    probabilities = keras.ops.convert_to_numpy(model(images))
    assert probabilities.shape == (4, 1) and ((probabilities >= 0) & (probabilities <= 1)).all()
    # Class activation maps need the last conv layer reachable from the model's input.
    cam_model = keras.Model(model.input, [model.get_layer(variant.cam_layer).output, model.output])
    feature_maps, _ = cam_model(images)
    assert len(feature_maps.shape) == 4


def test_unfreezing_trains_only_the_top_blocks_and_keeps_batchnorm_frozen():
    vgg = build_model(VARIANTS["vgg16_finetune_aug"], TINY, weights="none")
    assert vgg.get_layer("block5_conv3").trainable and vgg.get_layer("block4_conv1").trainable
    assert not vgg.get_layer("block3_conv3").trainable
    frozen = build_model(VARIANTS["vgg16_features_aug"], TINY, weights="none")
    assert not any(
        layer.trainable_weights for layer in frozen.layers if layer.name.startswith("block")
    )
    inception = build_model(
        VARIANTS["inception_v3_finetune_aug"], TINY, unfreeze_blocks=2, weights="none"
    )
    batch_norms = [
        layer for layer in inception.layers if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert batch_norms and not any(layer.trainable for layer in batch_norms)
    assert any(
        layer.trainable_weights for layer in inception.layers if layer.name.startswith("conv2d")
    )


def test_dropout_and_unfreeze_depth_are_builder_arguments():
    model = build_model(
        VARIANTS["vgg16_finetune_aug"], TINY, dropout=0.45, unfreeze_blocks=1, weights="none"
    )
    assert model.get_layer("dropout1").rate == 0.45
    assert (
        model.get_layer("block5_conv1").trainable and not model.get_layer("block4_conv3").trainable
    )
    with pytest.raises(ConfigError, match="unfreeze_blocks"):
        build_model(VARIANTS["vgg16_finetune_aug"], TINY, unfreeze_blocks=9, weights="none")


def test_weights_file_written_by_the_test_loads_into_the_base(tmp_path):
    keras.utils.set_random_seed(1)
    donor = keras.applications.VGG16(include_top=False, weights=None, input_shape=(TINY, TINY, 3))
    path = tmp_path / "vgg16_notop.weights.h5"
    donor.save_weights(path)
    model = build_model(VARIANTS["vgg16_features"], TINY, weights=str(path))
    for name in ("block1_conv1", "block5_conv3"):
        np.testing.assert_array_equal(
            model.get_layer(name).get_weights()[0], donor.get_layer(name).get_weights()[0]
        )
    with pytest.raises(WeightsUnavailableError, match="no such weights file"):
        build_model(VARIANTS["vgg16_features"], TINY, weights=str(tmp_path / "missing.h5"))


def test_offline_imagenet_request_fails_with_a_helpful_error(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    # Whatever this machine's network and cache, the download itself fails.
    monkeypatch.setattr("keras.src.utils.file_utils.urlretrieve", offline)
    monkeypatch.setattr("keras.src.utils.file_utils.validate_file", lambda *a, **k: False)
    with pytest.raises(WeightsUnavailableError) as caught:
        build_model(VARIANTS["vgg16_features"], TINY, weights="imagenet")
    message = str(caught.value)
    assert (
        "weights=PATH" in message
        and "~/.keras/models" in message
        and "weights=none" in message
        and "\n" not in message
    )


def test_train_stops_before_any_training_when_weights_are_missing(tmp_path, capsys):
    missing = tmp_path / "missing.h5"
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "data"),
                "--variants",
                "basic_cnn,vgg16_features",
                "--overrides",
                f"weights={missing}",
            ]
        )
        == 1
    )
    assert f"no such weights file: {missing}" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # Nothing was prepared or trained first.


def test_variant_selection():
    assert [v.name for v in get_variants("all")] == list(VARIANTS)
    assert [v.name for v in get_variants("basic_cnn, vgg16_features")] == [
        "basic_cnn",
        "vgg16_features",
    ]
    with pytest.raises(ConfigError, match="unknown variant"):
        get_variants("basic_cnn,resnet")


def test_the_study_flaws_are_fixed():
    for variant in VARIANTS.values():
        model = build_model(variant, TINY, weights="none")
        assert model.output.shape == (None, 1)  # One sigmoid unit, never two.
        assert model.layers[-1].activation.__name__ == "sigmoid"
    vgg = build_model(VARIANTS["vgg16_features"], TINY, weights="none")
    assert (
        vgg.layers[1].__class__.__name__ == "CaffePreprocessing"
    )  # ImageNet preprocessing, not /255.


@pytest.mark.parametrize("flatten", ["flatten", "average"])
def test_the_head_s_first_layer_is_found_for_either_kind_of_dense_head(flatten):
    """A cached-features variant caches what goes into its head's first layer: Flatten or,
    for an average-pooled head, global average pooling."""
    features = keras.Input((3, 3, 8))
    model = keras.Model(features, dense_head((4,), flatten=flatten)(features, dropout=0.0))
    first = head_first_layer(model)
    expected = keras.layers.Flatten if flatten == "flatten" else keras.layers.GlobalAveragePooling2D
    assert isinstance(first, expected) and first.input.shape[1:] == (3, 3, 8)
    with pytest.raises(ValueError, match="no dense head"):
        head_first_layer(keras.Model(features, keras.layers.Conv2D(1, 3)(features)))
