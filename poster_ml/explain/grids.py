"""Explanations of one trained model on the test split: class activation map grids, the
localisation score against planted regions, and intermediate activations."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pandas as pd

from poster_ml import CLASS_NAMES, DECISION_THRESHOLD, plots, predicted_fresh
from poster_ml.errors import PosterMLError
from poster_ml.explain.cam import (
    class_activation_maps,
    classic_cam,
    feature_and_logit_model,
    float32_copy,
    upsample,
)
from poster_ml.explain.localisation import localisation_metrics
from poster_ml.explain.usage import model_usage
from poster_ml.models.variants import VARIANTS


@dataclasses.dataclass(frozen=True)
class Explanation:
    figures: dict  # Artifact file name -> matplotlib Figure.
    metrics: dict[str, float]


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


CAM_TITLES = {"grad_cam": "Grad-CAM", "layer_cam": "LayerCAM"}
# Classic CAM is exact for a linear head only; through Dense-ReLU layers it approximates.
CLASSIC_CAM_TITLE = "CAM (approximate: product of the head's kernels, ReLU and biases ignored)"
GRID_TITLES = {
    "highest": "highest p(fresh)",
    "lowest": "lowest p(fresh)",
    "mistakes": "most confident mistakes",
}


def chosen_posters(
    labels: np.ndarray, probabilities: np.ndarray, count: int
) -> dict[str, np.ndarray]:
    """Test rows of the highest and lowest probability of fresh, and the most confident mistakes."""
    order = np.argsort(probabilities, kind="stable")
    wrong = np.flatnonzero(predicted_fresh(probabilities) != labels.astype(bool))
    confidence = np.abs(probabilities[wrong] - DECISION_THRESHOLD)
    return {
        "highest": order[::-1][:count],
        "lowest": order[:count],
        "mistakes": wrong[np.argsort(-confidence, kind="stable")][:count],
    }


def explain(
    model: keras.Model,
    images_of,
    split: pd.DataFrame,
    probabilities: np.ndarray,
    priors: dict,
    posters: int = 8,
    samples: int = 1000,
    seed: int = 0,
    faithfulness_posters: int = 0,
) -> Explanation:
    """Grad-CAM and LayerCAM grids for the chosen posters (classic CAM too for a pooling head)
    and, where regions were planted, the localisation scores against their baselines.

    `images_of(rows)` returns the uint8 test posters of those shard rows; `priors` are the
    location priors of the training split (localisation.py). With `faithfulness_posters`,
    the deletion, insertion, occlusion and finding measures too (usage.py). Explanations
    are computed in float32 whatever precision the model was trained in.
    """
    labels = split["label"].to_numpy()
    model = float32_copy(model)
    cam_model = feature_and_logit_model(model, cam_layer_name(model))
    pooling_head = any(layer.name == "global_average_pooling" for layer in model.layers)
    figures = {}
    for name, rows in chosen_posters(labels, probabilities, posters).items():
        if len(rows) == 0:
            continue
        images = images_of(rows)
        captions = [
            f"p(fresh) {probabilities[row]:.2f}, true {CLASS_NAMES[labels[row]]}" for row in rows
        ]
        size = images.shape[1:3]
        for method, maps in class_activation_maps(cam_model, images).items():
            title = CAM_TITLES[method]
            figures[f"{method}_{name}.png"] = plots.heatmap_grid(
                images,
                upsample(maps, *size),
                captions,
                f"{model.name}: {title}, {GRID_TITLES[name]}",
            )
        if pooling_head:
            maps = upsample(classic_cam(model, cam_model, images), *size)
            figures[f"cam_{name}.png"] = plots.heatmap_grid(
                images, maps, captions, f"{model.name}: {CLASSIC_CAM_TITLE}, {GRID_TITLES[name]}"
            )
    metrics = localisation_metrics(
        cam_model, images_of, split, probabilities, priors, samples, seed
    )
    if faithfulness_posters:
        usage = model_usage(
            model,
            cam_model,
            images_of,
            split,
            probabilities,
            priors,
            pooling_head,
            faithfulness_posters,
            samples,
            seed,
        )
        metrics |= usage.metrics
        if usage.curves:
            figures["faithfulness_curves.png"] = plots.faithfulness_curves(
                usage.curves, f"{model.name}: deletion and insertion, {len(usage.curves)} orders"
            )
    return Explanation(figures, metrics)
