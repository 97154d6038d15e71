"""Intermediate activations: channel grids of chosen conv layers and their ReLUs, as the
study drew them for InceptionV3."""

from __future__ import annotations

import keras
import numpy as np

from poster_ml import plots


def following_activation(model: keras.Model, layer: keras.layers.Layer, hops: int = 2):
    """The activation layer fed by `layer` directly or through batch normalisation, if any."""
    tensor = layer.output
    for _ in range(hops):
        consumer = next(
            (
                candidate
                for candidate in model.layers
                if getattr(candidate, "input", None) is tensor
            ),
            None,
        )
        if consumer is None:
            return None
        if isinstance(consumer, (keras.layers.Activation, keras.layers.ReLU)):
            return consumer
        tensor = consumer.output
    return None


def intermediate_activations(
    model: keras.Model, image: np.ndarray, conv_numbers: tuple[int, ...] = (1, 4, 9)
) -> dict:
    """Channel grids of the chosen conv layers (1-based among the model's Conv2D layers) and
    of the ReLU that follows each, for one poster, as the study drew them for InceptionV3."""
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    chosen = []
    for number in conv_numbers:
        if number <= len(convolutions):
            convolution = convolutions[number - 1]
            chosen.append(convolution)
            relu = following_activation(model, convolution)
            if relu is not None:
                chosen.append(relu)
    probe = keras.Model(model.inputs[0], [layer.output for layer in chosen])
    outputs = probe(image[None].astype(np.float32), training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {
        f"activations_{layer.name}.png": plots.activation_grid(
            keras.ops.convert_to_numpy(output)[0], f"{model.name}: {layer.name}"
        )
        for layer, output in zip(chosen, outputs, strict=True)
    }
