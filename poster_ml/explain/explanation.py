"""One model's explanation on the test split, assembled: the posters chosen once, each
method's maps computed once for all of them, then the grids, the localisation scores
against planted regions, and the faithfulness measures and the study's finding."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
import numpy as np
import pandas as pd

from poster_ml import CLASS_NAMES, DECISION_THRESHOLD, plots, predicted_fresh
from poster_ml.explain.cam import (
    CAM_METHODS,
    cam_layer_name,
    class_activation_maps,
    classic_cam,
    feature_and_logit_model,
    upsample,
)
from poster_ml.explain.faithfulness import FaithfulnessPosters, faithfulness_measures
from poster_ml.explain.localisation import localisation_metrics, planted_regions, scorable_rows

CAM_TITLES = {
    "grad_cam": "Grad-CAM",
    "layer_cam": "LayerCAM",
    # Classic CAM is exact for a linear head only; through Dense-ReLU layers it approximates.
    "cam": "CAM (approximate: product of the head's kernels, ReLU and biases ignored)",
}
GRID_TITLES = {
    "highest": "highest p(fresh)",
    "lowest": "lowest p(fresh)",
    "mistakes": "most confident mistakes",
}


@dataclasses.dataclass(frozen=True)
class ExplanationInputs:
    """What one model's explanation is computed from. `model` computes in float32;
    `images_of(rows)` returns the uint8 test posters of those rows; `priors` are the
    training split's location priors: of the planted regions on synthetic posters, of the
    detected text and faces on others (empty where neither is known)."""

    model: keras.Model
    images_of: Callable[[np.ndarray], np.ndarray]
    split: pd.DataFrame
    probabilities: np.ndarray
    priors: dict
    grid_posters: int = 8
    faithfulness_posters: int = 0
    samples: int = 1000
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class Explanation:
    figures: dict  # Artifact file name -> matplotlib Figure.
    metrics: dict[str, float]


@dataclasses.dataclass(frozen=True)
class PosterMaps:
    """Each method's maps (at the CAM layer's resolution) of the chosen test posters."""

    rows: np.ndarray  # Sorted test rows.
    maps: dict[str, np.ndarray]

    def of(self, rows: np.ndarray, methods=None) -> dict[str, np.ndarray]:
        index = np.searchsorted(self.rows, rows)
        return {
            method: values[index]
            for method, values in self.maps.items()
            if methods is None or method in methods
        }


def chosen_posters(inputs: ExplanationInputs) -> dict[str, np.ndarray]:
    """Every group of test rows an explanation looks at, from one ordering by p(fresh):
    the grids' highest, lowest and most confident mistakes, the faithfulness measures'
    most fresh and most rotten, and the posters whose planted region can be scored."""
    probabilities, labels = inputs.probabilities, inputs.split["label"].to_numpy()
    order = np.argsort(probabilities, kind="stable")
    wrong = np.flatnonzero(predicted_fresh(probabilities) != labels.astype(bool))
    confidence = np.abs(probabilities[wrong] - DECISION_THRESHOLD)
    half = min(inputs.faithfulness_posters // 2, len(order) // 2)
    return {
        "highest": order[::-1][: inputs.grid_posters],
        "lowest": order[: inputs.grid_posters],
        "mistakes": wrong[np.argsort(-confidence, kind="stable")][: inputs.grid_posters],
        "most_fresh": order[::-1][:half],
        "most_rotten": order[:half],
        "scorable": scorable_rows(inputs.split, probabilities)
        if planted_regions(inputs.split) and inputs.priors
        else order[:0],
    }


def poster_maps(inputs: ExplanationInputs, rows: np.ndarray, batch: int = 64) -> PosterMaps:
    """Grad-CAM and LayerCAM (and classic CAM for a pooling head) of each row, once."""
    model = inputs.model
    cam_model = feature_and_logit_model(model, cam_layer_name(model))
    pooling_head = any(layer.name == "global_average_pooling" for layer in model.layers)
    rows = np.unique(rows)
    batches = []
    for start in range(0, len(rows), batch):
        images = inputs.images_of(rows[start : start + batch])
        maps = class_activation_maps(cam_model, images)
        if pooling_head:
            maps["cam"] = classic_cam(model, cam_model, images)
        batches.append(maps)
    methods = batches[0] if batches else {}
    return PosterMaps(
        rows, {method: np.concatenate([b[method] for b in batches]) for method in methods}
    )


def grid_figures(inputs: ExplanationInputs, groups: dict, maps: PosterMaps) -> dict:
    """A heatmap grid per method and per group of the grids' posters."""
    labels, figures = inputs.split["label"].to_numpy(), {}
    for name in GRID_TITLES:
        rows = groups[name]
        if len(rows) == 0:
            continue
        images = inputs.images_of(rows)
        captions = [
            f"p(fresh) {inputs.probabilities[row]:.2f}, true {CLASS_NAMES[labels[row]]}"
            for row in rows
        ]
        for method, values in maps.of(rows).items():
            title = f"{inputs.model.name}: {CAM_TITLES[method]}, {GRID_TITLES[name]}"
            upsampled = upsample(values, *images.shape[1:3])
            figures[f"{method}_{name}.png"] = plots.heatmap_grid(images, upsampled, captions, title)
    return figures


def explain(inputs: ExplanationInputs) -> Explanation:
    """The grids, the localisation scores where regions were planted, and with
    `faithfulness_posters` the deletion, insertion, occlusion and finding measures."""
    groups = chosen_posters(inputs)
    maps = poster_maps(inputs, np.concatenate(list(groups.values())))
    figures = grid_figures(inputs, groups, maps)

    def cam_maps_of(rows: np.ndarray) -> dict[str, np.ndarray]:
        return maps.of(rows, CAM_METHODS)

    metrics = localisation_metrics(
        cam_maps_of, inputs.split, inputs.probabilities, inputs.priors, inputs.samples, inputs.seed
    )
    if inputs.faithfulness_posters:
        extremes = {name: groups[name] for name in ("most_fresh", "most_rotten")}
        posters = FaithfulnessPosters(extremes, inputs.images_of, maps.of)
        measured = faithfulness_measures(inputs, posters)
        metrics |= measured.metrics
        if measured.curves:
            figures["faithfulness_curves.png"] = plots.faithfulness_curves(
                measured.curves,
                f"{inputs.model.name}: deletion and insertion, {len(measured.curves)} orders",
            )
    return Explanation(figures, metrics)
