"""Class activation maps: Grad-CAM and LayerCAM for every variant, from the logit's
gradients, and classic CAM for a pooling head (localisation.py scores the maps against
known regions)."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from poster_ml import predicted_fresh
from poster_ml.errors import PosterMLError
from poster_ml.models.variants import OUTPUT_LAYER, VARIANTS


def float32_copy(model: keras.Model) -> keras.Model:
    """The model itself if it computes in float32, else a float32 copy with its weights.

    A model trained under mixed precision would give float16 gradients, which underflow
    and round; explanations are always computed in float32.
    """
    if all(layer.dtype_policy.compute_dtype == "float32" for layer in model.layers):
        return model
    config = _float32_policies(model.get_config())
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")  # For layers without a policy of their own.
    try:
        copy = model.__class__.from_config(config)
    finally:
        keras.config.set_dtype_policy(previous)
    copy.set_weights(model.get_weights())
    return copy


def _float32_policies(config):
    """The config with every mixed dtype policy replaced by float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and str(
            config.get("config", {}).get("name", "")
        ).startswith("mixed_"):
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: _float32_policies(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_policies(value) for value in config]
    return config


def cam_layer_name(model: keras.Model) -> str:
    """The variant's CAM layer, or else the last layer with spatial (4-D) output."""
    if model.name in VARIANTS:
        return VARIANTS[model.name].cam_layer
    spatial = [
        layer.name
        for layer in model.layers
        if not isinstance(layer, keras.layers.InputLayer) and len(layer.output.shape) == 4
    ]
    if not spatial:
        raise PosterMLError(
            f"model {model.name} has no layer with spatial output for a class activation map"
        )
    return spatial[-1]


def poster_cam_model(model: keras.Model) -> keras.Model:
    """The model's feature-and-logit model at its CAM layer, in float32: what LayerCAM and
    Grad-CAM of any poster need, built once per model."""
    explained = float32_copy(model)
    return feature_and_logit_model(explained, cam_layer_name(explained))


def output_unit(model: keras.Model) -> keras.layers.Dense:
    """The one-unit Dense layer whose sigmoid is the probability of fresh."""
    if any(layer.name == OUTPUT_LAYER for layer in model.layers):
        return model.get_layer(OUTPUT_LAYER)
    dense = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Dense) and layer.units == 1
    ]
    if not dense:
        raise ValueError(f"model {model.name} has no one-unit Dense output layer to explain")
    return dense[-1]


def feature_and_logit_model(model: keras.Model, layer_name: str) -> keras.Model:
    """A model from the images to (the layer's feature maps, the logit of fresh).

    The logit is the output unit's pre-activation (its kernel and bias on the features),
    never rebuilt from the probability: in float32 a probability rounds to 1.0 from a
    logit of about 17 on, where its gradient is exactly zero and the map would be blank.

    The layer must be one of the model's own: a layer inside a nested model is not in the
    outer graph ("graph disconnected"). The variants are built flat for that reason
    (models/bases.py puts a pretrained base's layers into the outer graph).
    """
    if not any(layer.name == layer_name for layer in model.layers):
        raise PosterMLError(
            f"model {model.name} has no layer {layer_name!r} of its own to explain "
            "(a layer inside a nested model is not in the model's graph)"
        )
    unit = output_unit(model)
    logits = keras.layers.Dense(1, dtype="float32", name="fresh_logit")
    cam_model = keras.Model(
        model.inputs[0], [model.get_layer(layer_name).output, logits(unit.input)]
    )
    logits.set_weights([weight.astype("float32") for weight in unit.get_weights()])
    return cam_model


def class_gradients(
    cam_model: keras.Model, images: np.ndarray, toward_fresh: np.ndarray | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """The feature maps and the gradient of the explained class's logit with respect to them.

    Each map explains the class the model predicts (fresh or rotten) unless
    `toward_fresh` says otherwise; the rotten logit is minus the fresh one.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        feature_maps, logits = cam_model(images, training=False)
        logits = tf.reshape(tf.cast(logits, tf.float32), [-1])
        if toward_fresh is None:
            toward_fresh = predicted_fresh(1 / (1 + np.exp(-logits.numpy().astype(np.float64))))
        scores = tf.where(tf.constant(toward_fresh), logits, -logits)
    gradients = tape.gradient(scores, feature_maps)
    return tf.cast(feature_maps, tf.float32), tf.cast(gradients, tf.float32)


def grad_cam_from(feature_maps: tf.Tensor, gradients: tf.Tensor) -> np.ndarray:
    """Grad-CAM heat maps in [0, 1], one (h, w) map per image at the feature maps' size:
    the ReLU of the channels weighted by their mean gradient."""
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    return _normalise(tf.nn.relu(tf.reduce_sum(weights * feature_maps, axis=-1)).numpy())


def layer_cam_from(feature_maps: tf.Tensor, gradients: tf.Tensor) -> np.ndarray:
    """LayerCAM (Jiang et al., 2021): each position weighted by its own positive gradient.

    Grad-CAM averages each channel's gradient over the whole map, which blurs the maps
    of heads that Flatten (every study variant but InceptionV3): there a channel's
    gradient differs from place to place. LayerCAM keeps the place.
    """
    return _normalise(
        tf.reduce_sum(tf.nn.relu(gradients) * tf.nn.relu(feature_maps), axis=-1).numpy()
    )


CAM_METHODS = {"grad_cam": grad_cam_from, "layer_cam": layer_cam_from}


def class_activation_maps(cam_model: keras.Model, images: np.ndarray) -> dict[str, np.ndarray]:
    """Every method's maps for the predicted class, from one forward and backward pass."""
    feature_maps, gradients = class_gradients(cam_model, images)
    return {
        method: from_gradients(feature_maps, gradients)
        for method, from_gradients in CAM_METHODS.items()
    }


def classic_cam(model: keras.Model, cam_model: keras.Model, images: np.ndarray) -> np.ndarray:
    """The study's CAM for a global-average-pooling head: feature maps weighted by the
    product of the following dense layers' kernels, as drawn for InceptionV3."""
    dense_layers = [
        layer
        for layer in model.layers[model.layers.index(model.get_layer("global_average_pooling")) :]
        if isinstance(layer, keras.layers.Dense)
    ]
    weights = dense_layers[0].kernel.numpy()
    for layer in dense_layers[1:]:
        weights = weights @ layer.kernel.numpy()
    feature_maps = keras.ops.convert_to_numpy(
        cam_model(images.astype(np.float32), training=False)[0]
    ).astype(np.float32)
    maps = np.einsum("nhwc,c->nhw", feature_maps, weights[:, 0])
    return _normalise(np.maximum(maps, 0))


def _normalise(maps: np.ndarray) -> np.ndarray:
    peaks = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peaks > 0, maps / np.where(peaks > 0, peaks, 1), 0.0).astype(np.float32)


def upsample(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of (n, h, w) maps to the poster's size."""
    return keras.ops.convert_to_numpy(
        keras.ops.image.resize(maps[..., None], (height, width), interpolation="bilinear")
    )[..., 0]
