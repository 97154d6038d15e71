"""How well class activation maps find the planted regions of synthetic posters, measured
against baselines that never look at the poster; and the study's finding, the maps' share
on the title and people (planted) or on the text and faces the detectors found (any poster).

A map's score on a poster is the share of its mass inside that poster's planted region.
Titles sit in fixed bands and crowds in the middle, so a fixed map per class already
scores well above a uniform one. Each method is therefore reported beside two baselines
on the same posters:

- the location prior: the class's mean region mask over the training split, scored
  against each poster's own region;
- the permutation baseline: the method's own map scored against the region of another
  poster of the same planted class.

The headline is the ratio of the method's mean score to the stronger baseline's, with a
bootstrap interval over posters. A map of 1 x 1 cells (InceptionV3's `mixed10` at small
sizes, say) cannot localise anything and is reported as not scorable.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from poster_ml import predicted_fresh
from poster_ml.data.annotations import (
    DETECTED_TITLE_COLUMNS,
    FACES_COLUMN,
    STATUS_COLUMN,
    TEXT_COLUMN,
    box_masks,
    boxes_of,
    region_masks,
)
from poster_ml.data.synthetic import PEOPLE_COLUMNS, PLANTED_COLUMN, REGION_COLUMNS, TITLE_COLUMNS
from poster_ml.evaluation.design import wilson_interval
from poster_ml.evaluation.intervals import mean_interval, ratio_interval
from poster_ml.explain.cam import upsample

COMPARISON_GRID = 64  # Maps and masks are compared on a common 64 x 64 grid.


def shares_inside(maps: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Per poster, the share of the map's mass inside the region (maps of any size)."""
    return shares_on_masks(maps, region_masks(regions, COMPARISON_GRID, COMPARISON_GRID))


def shares_on_masks(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per poster, the share of the map's mass on its (COMPARISON_GRID square) mask."""
    resized = np.clip(upsample(maps.astype(np.float32), COMPARISON_GRID, COMPARISON_GRID), 0, None)
    mass = resized.reshape(len(maps), -1).sum(axis=1)
    inside = (resized * masks).reshape(len(maps), -1).sum(axis=1)
    # An all-zero map says nothing; it scores as a uniform map would.
    area = masks.reshape(len(maps), -1).mean(axis=1)
    return np.where(mass > 0, inside / np.where(mass > 0, mass, 1), area)


def localisation_score(maps: np.ndarray, regions: np.ndarray) -> tuple[float, float]:
    """(mean share of mass inside the regions, mean share of the area they cover: a uniform map's score)."""
    area = (
        region_masks(regions, COMPARISON_GRID, COMPARISON_GRID)
        .reshape(len(regions), -1)
        .mean(axis=1)
    )
    return float(shares_inside(maps, regions).mean()), float(area.mean())


def location_priors(train_split: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each planted class's mean region mask over the training split, as a (COMPARISON_GRID, COMPARISON_GRID) map."""
    regions, planted = region_table(train_split)
    return {
        name: region_masks(regions[planted == name], COMPARISON_GRID, COMPARISON_GRID).mean(axis=0)
        for name in ("fresh", "rotten")
        if (planted == name).any()
    }


def planted_regions(split: pd.DataFrame) -> bool:
    """Whether the posters carry the regions the synthetic generator planted."""
    return {PLANTED_COLUMN, *REGION_COLUMNS} <= set(split.columns)


def region_boxes(split: pd.DataFrame, columns) -> np.ndarray:
    """Boxes (x0, y0, x1, y1) from the split's columns; NaN where a poster has none."""
    return split[list(columns)].apply(pd.to_numeric, errors="coerce").to_numpy()


def region_table(split: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return region_boxes(split, REGION_COLUMNS), split[PLANTED_COLUMN].to_numpy()


def same_class_permutation(planted: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each poster, another poster of the same planted class (itself only if alone)."""
    partner = np.arange(len(planted))
    for name in np.unique(planted):
        members = np.flatnonzero(planted == name)
        if len(members) > 1:
            # A random cyclic shift of a shuffled order never maps a poster to itself.
            order = rng.permutation(members)
            partner[order] = np.roll(order, 1)
    return partner


def method_scores(
    maps: np.ndarray,
    regions: np.ndarray,
    prior_shares: np.ndarray,
    partner: np.ndarray,
    samples: int,
    seed: int,
) -> dict[str, float]:
    """One method's score, both baselines, and the ratio to the stronger one with its interval."""
    if maps.shape[1] * maps.shape[2] <= 1:
        return {"localisation_scorable": 0.0}
    scores = shares_inside(maps, regions)
    permuted = shares_inside(maps, regions[partner])
    stronger = prior_shares if prior_shares.mean() >= permuted.mean() else permuted
    ratio, low, high = ratio_interval(scores, stronger, samples, seed)
    return {
        "localisation_scorable": 1.0,
        "localisation": float(scores.mean()),
        "localisation_prior_baseline": float(prior_shares.mean()),
        "localisation_permutation_baseline": float(permuted.mean()),
        "localisation_ratio": ratio,
        "localisation_ratio_ci_low": low,
        "localisation_ratio_ci_high": high,
    }


def scorable_rows(split: pd.DataFrame, probabilities: np.ndarray) -> np.ndarray:
    """Correctly classified posters whose label agrees with their drawing, with a region.

    Posters whose label noise contradicts their drawing are left out: their region is
    the evidence for the other class.
    """
    regions, planted = region_table(split)
    labels = split["label"].to_numpy().astype(bool)
    correct = predicted_fresh(probabilities) == labels
    as_drawn = planted == np.where(labels, "fresh", "rotten")
    return np.flatnonzero(correct & as_drawn & ~np.isnan(regions).any(axis=1))


def localisation_metrics(
    maps_of: Callable[[np.ndarray], dict[str, np.ndarray]],
    split: pd.DataFrame,
    probabilities: np.ndarray,
    priors: dict[str, np.ndarray],
    samples: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Every CAM method's localisation on the test posters, against both baselines.
    `maps_of(rows)` gives each method's maps of those test rows."""
    if not planted_regions(split) or not priors:
        return {}
    rows = scorable_rows(split, probabilities)
    if len(rows) < 2:
        return {}
    regions, planted = (table[rows] for table in region_table(split))
    prior_maps = np.stack([priors[name] for name in planted])
    prior_shares = shares_inside(prior_maps, regions)
    partner = same_class_permutation(planted, np.random.default_rng(seed))
    results = {
        "cam_posters": float(len(rows)),
        "cam_uniform_baseline": localisation_score(prior_maps, regions)[1],
    }
    for method, maps in maps_of(rows).items():
        results |= {
            f"{method}_{name}": value
            for name, value in method_scores(
                maps, regions, prior_shares, partner, samples, seed
            ).items()
        }
    return results


REGIONS = {"title": TITLE_COLUMNS, "people": PEOPLE_COLUMNS}
# What the detectors found on any poster (data/annotations.py), by the name the finding uses.
DETECTED = {"text": TEXT_COLUMN, "faces": FACES_COLUMN}


def detected_masks(split: pd.DataFrame, column: str) -> np.ndarray:
    """Each poster's detected boxes of one kind as a (COMPARISON_GRID square) mask."""
    return np.stack([box_masks(boxes_of(cell), COMPARISON_GRID) for cell in split[column]]).reshape(
        len(split), COMPARISON_GRID, COMPARISON_GRID
    )


def detected_priors(train_split: pd.DataFrame) -> dict[str, np.ndarray]:
    """Position alone, on any posters: each label's mean mask of detected text and faces over
    the training split's annotated posters, as a (COMPARISON_GRID square) map."""
    if STATUS_COLUMN not in train_split.columns:
        return {}
    annotated = train_split[train_split[STATUS_COLUMN] == "ok"]
    masks = detected_masks(annotated, TEXT_COLUMN) | detected_masks(annotated, FACES_COLUMN)
    labels = annotated["label"].to_numpy().astype(bool)
    return {
        name: masks[labels == fresh].mean(axis=0).astype(np.float64)
        for name, fresh in (("fresh", True), ("rotten", False))
        if (labels == fresh).any() and masks[labels == fresh].any()
    }


def detected_title_agreement(manifest: pd.DataFrame) -> dict[str, float]:
    """On synthetic posters: how often the detected title (the largest text block) is the
    planted title at IoU 0.5 or more, as recall (of planted titles) and precision (of
    detected ones), each with a Wilson 95 % interval."""
    if not {*TITLE_COLUMNS, *DETECTED_TITLE_COLUMNS} <= set(manifest.columns):
        return {}
    planted = region_boxes(manifest, TITLE_COLUMNS)
    detected = region_boxes(manifest, DETECTED_TITLE_COLUMNS)
    found = ~np.isnan(detected).any(axis=1)
    matched = int((box_iou(planted, detected) >= 0.5).sum())
    metrics: dict[str, float] = {"detector_posters": float(len(manifest))}
    for name, trials in (("recall", len(manifest)), ("precision", int(found.sum()))):
        low, high = wilson_interval(matched, trials)
        metrics |= named(f"detected_title_{name}", (matched / max(trials, 1), low, high))
    return metrics


def box_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row by row intersection over union of two (n, 4) box arrays; 0 where either is NaN."""
    low = np.maximum(first[:, :2], second[:, :2])
    high = np.minimum(first[:, 2:], second[:, 2:])
    intersection = np.clip(high - low, 0, None).prod(axis=1)

    def area(boxes: np.ndarray) -> np.ndarray:
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    union = area(first) + area(second) - intersection
    return np.nan_to_num(intersection / np.where(union > 0, union, np.nan), nan=0.0)


def finding_shares(
    split: pd.DataFrame, rows: np.ndarray, groups: dict, maps: dict, samples: int, seed: int
) -> dict[str, float]:
    """The study's finding measured: each map's mean share of mass on the title and on the
    people, per group of posters (`rows` is the groups' rows in order, `maps` their maps);
    the detected text and faces on any annotated posters; nothing where neither is known."""
    masks = region_masks_of(split.iloc[rows])
    metrics: dict[str, float] = {}
    start = 0
    for group, members in groups.items():
        chosen = slice(start, start + len(members))
        start += len(members)
        for region, (region_mask, measured) in masks.items():
            for method, values in maps.items():
                shares = shares_on_masks(values[chosen], region_mask[chosen])
                # A poster whose detectors failed has no regions to score: left out.
                shares = np.where(measured[chosen], shares, np.nan)
                metrics |= named(
                    f"finding_{group}_{method}_{region}_share",
                    mean_interval(shares, samples, seed),
                )
    return metrics


def region_masks_of(posters: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The finding's regions of these posters: region -> (masks, whether measured), the
    planted title and people on synthetic posters, the detected text and faces on annotated
    ones. A poster without figures or faces has an empty region: every map puts 0 % there."""
    masks = {}
    if {*TITLE_COLUMNS, *PEOPLE_COLUMNS} <= set(posters.columns):
        for region, columns in REGIONS.items():
            boxes = np.nan_to_num(region_boxes(posters, columns), nan=0.0)
            masks[region] = (
                region_masks(boxes, COMPARISON_GRID, COMPARISON_GRID),
                np.ones(len(posters), dtype=bool),
            )
    if STATUS_COLUMN in posters.columns:
        measured = (posters[STATUS_COLUMN] == "ok").to_numpy()
        for region, column in DETECTED.items():
            masks[region] = (detected_masks(posters, column), measured)
    return masks


def named(name: str, value: tuple[float, float, float]) -> dict[str, float]:
    """A measure and its interval as metrics: name, name_ci_low, name_ci_high."""
    return {name: value[0], f"{name}_ci_low": value[1], f"{name}_ci_high": value[2]}
