"""Explanations of one trained model on the test split: class activation map grids, the
localisation score against planted regions, and intermediate activations."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pandas as pd

from poster_ml import CLASS_NAMES, plots
from poster_ml.cam import class_activation_maps, classic_cam, feature_and_output_model, localisation_score, upsample
from poster_ml.errors import PosterMLError
from poster_ml.synthetic import PLANTED_COLUMN, REGION_COLUMNS
from poster_ml.variants import VARIANTS


@dataclasses.dataclass(frozen=True)
class Explanation:
    figures: dict  # Artifact file name -> matplotlib Figure.
    metrics: dict[str, float]


def cam_layer_name(model: keras.Model) -> str:
    """The variant's CAM layer, or else the last layer with spatial (4-D) output."""
    if model.name in VARIANTS:
        return VARIANTS[model.name].cam_layer
    spatial = [layer.name for layer in model.layers if not isinstance(layer, keras.layers.InputLayer) and len(layer.output.shape) == 4]
    if not spatial:
        raise PosterMLError(f"model {model.name} has no layer with spatial output for a class activation map")
    return spatial[-1]


CAM_TITLES = {"grad_cam": "Grad-CAM", "layer_cam": "LayerCAM"}
GRID_TITLES = {"highest": "highest p(fresh)", "lowest": "lowest p(fresh)", "mistakes": "most confident mistakes"}


def chosen_posters(labels: np.ndarray, probabilities: np.ndarray, count: int) -> dict[str, np.ndarray]:
    """Test rows of the highest and lowest probability of fresh, and the most confident mistakes."""
    order = np.argsort(probabilities, kind="stable")
    wrong = np.flatnonzero((probabilities >= 0.5) != labels.astype(bool))
    confidence = np.abs(probabilities[wrong] - 0.5)
    return {
        "highest": order[::-1][:count],
        "lowest": order[:count],
        "mistakes": wrong[np.argsort(-confidence, kind="stable")][:count],
    }


def explain(model: keras.Model, images_of, split: pd.DataFrame, probabilities: np.ndarray, posters: int = 8) -> Explanation:
    """Grad-CAM and LayerCAM grids for the chosen posters (classic CAM too for a pooling head)
    and, where regions were planted, the localisation scores.

    `images_of(rows)` returns the uint8 test posters of those shard rows.
    """
    labels = split["label"].to_numpy()
    cam_model = feature_and_output_model(model, cam_layer_name(model))
    pooling_head = any(layer.name == "global_average_pooling" for layer in model.layers)
    figures = {}
    for name, rows in chosen_posters(labels, probabilities, posters).items():
        if len(rows) == 0:
            continue
        images = images_of(rows)
        captions = [f"p(fresh) {probabilities[row]:.2f}, true {CLASS_NAMES[labels[row]]}" for row in rows]
        size = images.shape[1:3]
        for method, maps in class_activation_maps(cam_model, images).items():
            title = CAM_TITLES[method]
            figures[f"{method}_{name}.png"] = plots.heatmap_grid(images, upsample(maps, *size), captions, f"{model.name}: {title}, {GRID_TITLES[name]}")
        if pooling_head:
            maps = upsample(classic_cam(model, cam_model, images), *size)
            figures[f"cam_{name}.png"] = plots.heatmap_grid(images, maps, captions, f"{model.name}: CAM, {GRID_TITLES[name]}")
    return Explanation(figures, localisation_metrics(cam_model, images_of, split, probabilities))


def localisation_metrics(cam_model: keras.Model, images_of, split: pd.DataFrame, probabilities: np.ndarray, batch: int = 64) -> dict[str, float]:
    """Grad-CAM and LayerCAM mass inside the planted region, over correctly classified
    synthetic posters, beside the uniform map's score (the mean area the regions cover).

    Posters whose label noise contradicts their drawing are left out: their region is
    the evidence for the other class.
    """
    if not {PLANTED_COLUMN, *REGION_COLUMNS} <= set(split.columns):
        return {}
    regions = split[list(REGION_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy()
    labels = split["label"].to_numpy().astype(bool)
    correct = (probabilities >= 0.5) == labels
    as_drawn = split[PLANTED_COLUMN].to_numpy() == np.where(labels, "fresh", "rotten")
    rows = np.flatnonzero(correct & as_drawn & ~np.isnan(regions).any(axis=1))
    if len(rows) == 0:
        return {}
    batches = [class_activation_maps(cam_model, images_of(rows[start : start + batch])) for start in range(0, len(rows), batch)]
    results = {"cam_posters": float(len(rows))}
    for method in batches[0]:
        score, uniform = localisation_score(np.concatenate([maps[method] for maps in batches]), regions[rows])
        results |= {f"{method}_localisation": score, f"{method}_localisation_ratio": score / uniform, "cam_uniform_baseline": uniform}
    return results


def following_activation(model: keras.Model, layer: keras.layers.Layer, hops: int = 2):
    """The activation layer fed by `layer` directly or through batch normalisation, if any."""
    tensor = layer.output
    for _ in range(hops):
        consumer = next((candidate for candidate in model.layers if getattr(candidate, "input", None) is tensor), None)
        if consumer is None:
            return None
        if isinstance(consumer, (keras.layers.Activation, keras.layers.ReLU)):
            return consumer
        tensor = consumer.output
    return None


def intermediate_activations(model: keras.Model, image: np.ndarray, conv_numbers: tuple[int, ...] = (1, 4, 9)) -> dict:
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
        f"activations_{layer.name}.png": plots.activation_grid(keras.ops.convert_to_numpy(output)[0], f"{model.name}: {layer.name}")
        for layer, output in zip(chosen, outputs)
    }
