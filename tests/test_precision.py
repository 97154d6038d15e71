"""The code paths a GPU takes, exercised on the CPU: mixed precision and augmentation in
the training step."""

from __future__ import annotations

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import encode
from PIL import Image

from poster_ml.config import AugmentConfig, TrainConfig
from poster_ml.data.images import InputContract
from poster_ml.explain.cam import class_activation_maps, feature_and_logit_model, float32_copy
from poster_ml.models.fit import train_variant
from poster_ml.models.variants import VARIANTS
from poster_ml.serving.model import log_poster_model


@pytest.fixture(autouse=True)
def float32_afterwards():
    yield
    keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_a_variant_trains_under_mixed_precision_and_serves_float32(policy, synthetic_dataset):
    config = TrainConfig(
        max_epochs=1, steps_per_epoch=2, weights="none", precision=policy, batch_size=16
    )
    try:
        trained = train_variant(
            VARIANTS["regularized_cnn_aug"], synthetic_dataset, config, AugmentConfig()
        )
    except Exception as error:  # pragma: no cover - a backend without float16 kernels on the CPU
        if (
            policy == "mixed_float16"
            and "float16" in str(error).lower()
            and "not supported" in str(error).lower()
        ):
            pytest.skip(f"this backend has no {policy} CPU kernels: {str(error).splitlines()[0]}")
        raise
    model = trained.model
    assert model.layers[2].dtype_policy.name == policy  # Inner layers compute in 16 bits.
    assert model.outputs[0].dtype == "float32"  # The sigmoid and the loss stay float32.
    assert np.isfinite(trained.history[["loss", "val_loss"]].to_numpy()).all()
    images = synthetic_dataset.reader("test").read(np.arange(4))
    probabilities = keras.ops.convert_to_numpy(model(images.astype("float32")))
    assert probabilities.dtype == np.float32 and np.isfinite(probabilities).all()
    # Explanations are computed in a float32 copy.
    copy = float32_copy(model)
    assert all(layer.dtype_policy.compute_dtype == "float32" for layer in copy.layers)
    maps = class_activation_maps(
        feature_and_logit_model(copy, VARIANTS["regularized_cnn_aug"].cam_layer), images
    )
    assert all(np.isfinite(value).all() and value.dtype == np.float32 for value in maps.values())
    # The logged model serves float32 probabilities.
    mlflow.set_experiment("poster-ml")  # In this test's own store (the fixture's).
    with mlflow.start_run():
        jpeg = encode(Image.fromarray(images[0]), "JPEG")
        info = log_poster_model(
            model, InputContract(synthetic_dataset.image_size), {}, jpeg, name="mixed"
        )
    served = mlflow.pyfunc.load_model(info.model_uri).predict(pd.DataFrame({"image": [jpeg]}))
    assert (
        served["probability_fresh"].dtype == np.float64 and 0 <= served["probability_fresh"][0] <= 1
    )


def test_augmentation_in_the_training_step_trains_the_same_model_code(synthetic_dataset):
    config = TrainConfig(max_epochs=2, weights="none", augment_on="device", batch_size=16)
    trained = train_variant(
        VARIANTS["regularized_cnn_aug"], synthetic_dataset, config, AugmentConfig()
    )
    assert trained.model.name == "regularized_cnn_aug" and "device_warp" not in [
        layer.name for layer in trained.model.layers
    ]
    assert len(trained.history) == 2 and np.isfinite(trained.history["val_auc"]).all()
