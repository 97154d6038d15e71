"""Class activation maps: Grad-CAM and LayerCAM for every variant, classic CAM for a pooling
head, and the localisation score against the planted regions of synthetic posters."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def feature_and_output_model(model: keras.Model, layer_name: str) -> keras.Model:
    """A model from the images to (the layer's feature maps, the prediction).

    When the layer lives in a nested model (a Sequential holding VGG16 and a head, say),
    asking the outer model for it fails with "graph disconnected", because the nested
    model's tensors belong to its own graph. The chain of outer layers is then called
    again on a fresh input, the nested model replaced by a two-output copy of itself.
    """
    if any(layer.name == layer_name for layer in model.layers):
        return keras.Model(model.inputs[0], [model.get_layer(layer_name).output, model.outputs[0]])
    container = next((layer for layer in model.layers if isinstance(layer, keras.Model) and _contains(layer, layer_name)), None)
    if container is None:
        raise ValueError(f"model {model.name} has no layer {layer_name!r}")
    inputs = keras.Input(model.inputs[0].shape[1:])
    x, feature_maps = inputs, None
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if layer is container:
            feature_maps, x = feature_and_output_model(container, layer_name)(x)
        else:
            x = layer(x)
    return keras.Model(inputs, [feature_maps, x])


def _contains(model: keras.Model, layer_name: str) -> bool:
    return any(layer.name == layer_name or (isinstance(layer, keras.Model) and _contains(layer, layer_name)) for layer in model.layers)


def class_gradients(cam_model: keras.Model, images: np.ndarray, toward_fresh: np.ndarray | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """The feature maps and the gradient of the explained class's logit with respect to them.

    Each map explains the class the model predicts (fresh or rotten) unless
    `toward_fresh` says otherwise; the rotten logit is minus the fresh one.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        feature_maps, probabilities = cam_model(images, training=False)
        probabilities = tf.reshape(tf.cast(probabilities, tf.float32), [-1])
        if toward_fresh is None:
            toward_fresh = probabilities.numpy() >= 0.5
        logits = tf.math.log(probabilities + 1e-7) - tf.math.log(1 - probabilities + 1e-7)
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
    return _normalise(tf.reduce_sum(tf.nn.relu(gradients) * tf.nn.relu(feature_maps), axis=-1).numpy())


CAM_METHODS = {"grad_cam": grad_cam_from, "layer_cam": layer_cam_from}


def class_activation_maps(cam_model: keras.Model, images: np.ndarray) -> dict[str, np.ndarray]:
    """Every method's maps for the predicted class, from one forward and backward pass."""
    feature_maps, gradients = class_gradients(cam_model, images)
    return {method: from_gradients(feature_maps, gradients) for method, from_gradients in CAM_METHODS.items()}


def grad_cam(cam_model: keras.Model, images: np.ndarray, toward_fresh: np.ndarray | None = None) -> np.ndarray:
    return grad_cam_from(*class_gradients(cam_model, images, toward_fresh))


def layer_cam(cam_model: keras.Model, images: np.ndarray, toward_fresh: np.ndarray | None = None) -> np.ndarray:
    return layer_cam_from(*class_gradients(cam_model, images, toward_fresh))


def classic_cam(model: keras.Model, cam_model: keras.Model, images: np.ndarray) -> np.ndarray:
    """The study's CAM for a global-average-pooling head: feature maps weighted by the
    product of the following dense layers' kernels, as drawn for InceptionV3."""
    dense_layers = [layer for layer in model.layers[model.layers.index(model.get_layer("global_average_pooling")) :] if isinstance(layer, keras.layers.Dense)]
    weights = dense_layers[0].kernel.numpy()
    for layer in dense_layers[1:]:
        weights = weights @ layer.kernel.numpy()
    feature_maps = keras.ops.convert_to_numpy(cam_model(images.astype(np.float32), training=False)[0]).astype(np.float32)
    maps = np.einsum("nhwc,c->nhw", feature_maps, weights[:, 0])
    return _normalise(np.maximum(maps, 0))


def _normalise(maps: np.ndarray) -> np.ndarray:
    peaks = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peaks > 0, maps / np.where(peaks > 0, peaks, 1), 0.0).astype(np.float32)


def upsample(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of (n, h, w) maps to the poster's size."""
    return keras.ops.convert_to_numpy(keras.ops.image.resize(maps[..., None], (height, width), interpolation="bilinear"))[..., 0]


def region_masks(regions: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean (n, height, width) masks of boxes (x0, y0, x1, y1) normalised to [0, 1]."""
    rows = (np.arange(height) + 0.5) / height
    columns = (np.arange(width) + 0.5) / width
    inside_y = (rows[None, :] >= regions[:, 1:2]) & (rows[None, :] <= regions[:, 3:4])
    inside_x = (columns[None, :] >= regions[:, 0:1]) & (columns[None, :] <= regions[:, 2:3])
    return inside_y[:, :, None] & inside_x[:, None, :]


def localisation_score(maps: np.ndarray, regions: np.ndarray) -> tuple[float, float]:
    """(mean share of each map's mass inside its region, mean share of the area the regions cover).

    The second number is what a uniform map scores; a map that looks where the planted
    signal is scores clearly above it. Maps are upsampled to a common grid first.
    """
    side = 64
    masks = region_masks(regions, side, side)
    resized = np.clip(upsample(maps, side, side), 0, None)
    mass = resized.reshape(len(maps), -1).sum(axis=1)
    inside = (resized * masks).reshape(len(maps), -1).sum(axis=1)
    # An all-zero map says nothing; it scores as a uniform map would.
    area = masks.reshape(len(maps), -1).mean(axis=1)
    share = np.where(mass > 0, inside / np.where(mass > 0, mass, 1), area)
    return float(share.mean()), float(area.mean())
