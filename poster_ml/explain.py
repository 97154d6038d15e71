"""Explanations of one trained model on the test split: class activation map grids, the
localisation score against planted regions, and intermediate activations."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pandas as pd

from poster_ml import CLASS_NAMES, plots
from poster_ml.cam import classic_cam, feature_and_output_model, grad_cam, localisation_score, upsample
from poster_ml.synthetic import REGION_COLUMNS
from poster_ml.variants import VARIANTS


@dataclasses.dataclass(frozen=True)
class Explanation:
    figures: dict  # Artifact file name -> matplotlib Figure.
    metrics: dict[str, float]


def cam_layer_name(model: keras.Model) -> str:
    """The variant's CAM layer, or else the last layer with spatial (4-D) output."""
    if model.name in VARIANTS:
        return VARIANTS[model.name].cam_layer
    spatial = [layer.name for layer in model.layers if len(getattr(layer, "output", None).shape or ()) == 4]
    if not spatial:
        raise ValueError(f"model {model.name} has no layer with spatial output for a class activation map")
    return spatial[-1]


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
    """CAM grids for the chosen posters and, where regions were planted, the localisation score.

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
        maps = upsample(grad_cam(cam_model, images), *size)
        figures[f"grad_cam_{name}.png"] = plots.heatmap_grid(images, maps, captions, f"{model.name}: Grad-CAM, {name.replace('_', ' ')} p(fresh)")
        if pooling_head:
            maps = upsample(classic_cam(model, cam_model, images), *size)
            figures[f"cam_{name}.png"] = plots.heatmap_grid(images, maps, captions, f"{model.name}: CAM, {name} p(fresh)")
    return Explanation(figures, localisation_metrics(cam_model, images_of, split, probabilities))


def localisation_metrics(cam_model: keras.Model, images_of, split: pd.DataFrame, probabilities: np.ndarray, batch: int = 64) -> dict[str, float]:
    """Grad-CAM mass inside the planted region, over correctly classified synthetic posters."""
    if not set(REGION_COLUMNS) <= set(split.columns):
        return {}
    regions = split[list(REGION_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy()
    correct = (probabilities >= 0.5) == split["label"].to_numpy().astype(bool)
    rows = np.flatnonzero(correct & ~np.isnan(regions).any(axis=1))
    if len(rows) == 0:
        return {}
    maps = np.concatenate([grad_cam(cam_model, images_of(rows[start : start + batch])) for start in range(0, len(rows), batch)])
    score, uniform = localisation_score(maps, regions[rows])
    return {"cam_localisation": score, "cam_uniform_baseline": uniform, "cam_localisation_ratio": score / uniform, "cam_posters": float(len(rows))}


def intermediate_activations(model: keras.Model, image: np.ndarray, conv_numbers: tuple[int, ...] = (1, 4, 9)) -> dict:
    """Channel grids of the chosen conv layers (1-based among the model's Conv2D layers) and
    of the ReLU that follows each, for one poster, as the study drew them for InceptionV3."""
    convolutions = [index for index, layer in enumerate(model.layers) if isinstance(layer, keras.layers.Conv2D)]
    chosen = []
    for number in conv_numbers:
        if number > len(convolutions):
            continue
        index = convolutions[number - 1]
        chosen.append(model.layers[index])
        follower = next((layer for layer in model.layers[index + 1 : index + 4] if isinstance(layer, (keras.layers.Activation, keras.layers.ReLU))), None)
        if follower is not None:
            chosen.append(follower)
    probe = keras.Model(model.input, [layer.output for layer in chosen])
    outputs = probe(image[None].astype(np.float32), training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {
        f"activations_{layer.name}.png": plots.activation_grid(keras.ops.convert_to_numpy(output)[0], f"{model.name}: {layer.name}")
        for layer, output in zip(chosen, outputs)
    }
