"""Whether a model uses what its maps show, and the study's finding measured: on the most
confident posters of each class, every map's deletion and insertion areas beside a random
order and the location prior, its rank correlation with occlusion, and (on synthetic
posters, whose title and figures are known) its share of mass on the title and on the
people.

The posters are the test split's `posters / 2` highest and `posters / 2` lowest
p(fresh): the study's finding is about exactly those ("posters predicted fresh have a
very large title and few people"), and a deletion curve says most where the model is
sure to begin with.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd

from poster_ml import predicted_fresh
from poster_ml.data.synthetic import PEOPLE_COLUMNS, TITLE_COLUMNS
from poster_ml.explain import faithfulness as faith
from poster_ml.explain.cam import class_activation_maps, classic_cam, upsample
from poster_ml.explain.localisation import shares_inside
from poster_ml.models.predict import predict_probabilities

BASELINES = ("random", "prior")
REGIONS = {"title": TITLE_COLUMNS, "people": PEOPLE_COLUMNS}


@dataclasses.dataclass(frozen=True)
class Usage:
    metrics: dict[str, float]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]  # Order -> mean deletion, insertion curve.


def extreme_rows(probabilities: np.ndarray, posters: int) -> dict[str, np.ndarray]:
    order = np.argsort(probabilities, kind="stable")
    half = min(posters // 2, len(order) // 2)
    return {"most_fresh": order[::-1][:half], "most_rotten": order[:half]}


def method_maps(model, cam_model, images: np.ndarray, pooling_head: bool) -> dict:
    """Every gradient method's maps at the poster's size (CAM for a pooling head only),
    but for maps of one cell, which rank nothing."""
    size = images.shape[1:3]
    maps = class_activation_maps(cam_model, images)
    if pooling_head:
        maps["cam"] = classic_cam(model, cam_model, images)
    return {
        method: upsample(values, *size)
        for method, values in maps.items()
        if values.shape[1] * values.shape[2] > 1
    }


def model_usage(
    model,
    cam_model,
    images_of,
    split: pd.DataFrame,
    probabilities: np.ndarray,
    priors: dict[str, np.ndarray],
    pooling_head: bool,
    posters: int,
    samples: int,
    seed: int,
) -> Usage:
    started = time.perf_counter()
    groups = extreme_rows(probabilities, posters)
    rows = np.concatenate(list(groups.values()))
    if len(rows) < 2:
        return Usage({}, {})
    images = images_of(rows)
    fresh = predicted_fresh(probabilities[rows])

    def predict(batch: np.ndarray) -> np.ndarray:
        return predict_probabilities(model, batch)

    reference = faith.blurred(images)
    # A 1 x 1 map (InceptionV3's at small sizes) ranks nothing: it is left out, as it is
    # from localisation.
    maps = method_maps(model, cam_model, images, pooling_head)
    # The untouched and the blurred posters' probabilities: every curve's ends, and
    # occlusion's starting point.
    ends = (
        faith.class_probability(predict, images, fresh),
        faith.class_probability(predict, reference, fresh),
    )
    occlusion = faith.occlusion_maps(predict, images, reference, fresh, base=ends[0])
    grid = faith.GRID
    maps["occlusion"] = upsample(
        np.maximum(occlusion, 0).reshape(-1, grid, grid), *images.shape[1:3]
    )
    scores = {method: faith.cell_scores(values) for method, values in maps.items()}
    scores["occlusion"] = occlusion  # Exact, not through the resized map.
    scores["random"] = np.random.default_rng(seed).random(occlusion.shape)
    if {"fresh", "rotten"} <= set(priors):
        prior_maps = np.stack([priors["fresh" if f else "rotten"] for f in fresh])
        scores["prior"] = faith.cell_scores(prior_maps)
        maps["prior"] = prior_maps
    metrics: dict[str, float] = {"faithfulness_posters": float(len(rows))}
    areas, curves = {}, {}
    for order, cell_values in scores.items():
        deletion, insertion = faith.perturbation_curves(
            predict, images, reference, faith.ranked_cells(cell_values), fresh, ends=ends
        )
        areas[order] = faith.curve_area(deletion), faith.curve_area(insertion)
        curves[order] = deletion.mean(axis=0), insertion.mean(axis=0)
        for kind, values in zip(("deletion", "insertion"), areas[order], strict=True):
            metrics |= named(f"{order}_{kind}_auc", faith.mean_interval(values, samples, seed))
    for method in (name for name in scores if name not in BASELINES):
        if method != "occlusion":
            correlations = faith.rank_correlations(scores[method], scores["occlusion"])
            metrics |= named(
                f"{method}_occlusion_spearman", faith.mean_interval(correlations, samples, seed)
            )
        for baseline in (name for name in BASELINES if name in areas):
            difference = faith.difference_interval(
                areas[method][0], areas[baseline][0], samples, seed
            )
            metrics |= named(f"{method}_deletion_minus_{baseline}", difference)
    metrics |= finding_shares(split, rows, groups, maps, samples, seed)
    metrics["faithfulness_seconds"] = time.perf_counter() - started
    return Usage(metrics, curves)


def finding_shares(
    split: pd.DataFrame, rows: np.ndarray, groups: dict, maps: dict, samples: int, seed: int
) -> dict[str, float]:
    """Each map's mean share of mass on the title and on the people, per group of posters
    (nothing where the posters' regions are not known, as for a user's own posters)."""
    if not {*TITLE_COLUMNS, *PEOPLE_COLUMNS} <= set(split.columns):
        return {}
    # A poster without figures has no people region: every map puts 0 % there.
    boxes = {
        region: split[list(columns)].apply(pd.to_numeric, errors="coerce").to_numpy()[rows]
        for region, columns in REGIONS.items()
    }
    metrics: dict[str, float] = {}
    start = 0
    for group, members in groups.items():
        chosen = slice(start, start + len(members))
        start += len(members)
        for region in REGIONS:
            for method, values in maps.items():
                shares = shares_inside(values[chosen], boxes[region][chosen])
                metrics |= named(
                    f"finding_{group}_{method}_{region}_share",
                    faith.mean_interval(shares, samples, seed),
                )
    return metrics


def named(name: str, value: tuple[float, float, float]) -> dict[str, float]:
    return {name: value[0], f"{name}_ci_low": value[1], f"{name}_ci_high": value[2]}
