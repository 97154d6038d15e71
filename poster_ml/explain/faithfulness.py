"""Whether a model uses what its maps show: deletion and insertion curves, and occlusion.

A map ranks the poster's cells (a CELLS_PER_SIDE x CELLS_PER_SIDE partition). **Deletion** replaces the cells
with a reference in the map's order, most important first, and follows the probability
of the class the model predicted on the untouched poster; a faithful map makes it fall
fast (a small area under the curve). **Insertion** starts from the reference and reveals
the cells in the same order; a faithful map makes the probability rise fast (a large
area). Each method is read beside two orders that never look at the model: a random
order, and the class's location prior (where the planted cue usually lies).

The reference is the poster blurred (a Gaussian of a tenth of its side): it removes what
a cell shows, title letters and figures' outlines, and keeps its colours. A grey or
training-mean fill would put sharp-edged flat squares on the poster, shapes the model
never saw in training, which it may read as evidence of its own (Petsiuk et al., RISE,
2018, use the blurred image for insertion for this reason).

**Occlusion** (Zeiler and Fergus, 2014) is the model-agnostic reference map: each cell in
turn is replaced by the reference, and the drop of the probability is the cell's
importance. The gradient methods' maps are compared with it by Spearman's rank
correlation per poster.

Areas are means over equally spaced steps (the trapezoid rule on [0, 1]), so a curve
that stays at p scores p.

`faithfulness_measures` reads one model this way on the test split's most confident
posters of each class (half the most fresh, half the most rotten): the study's finding is
about exactly those ("posters predicted fresh have a very large title and few people"),
and a deletion curve says most where the model is sure to begin with. On synthetic
posters, whose title and figures are known, it measures the finding too.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
from scipy import ndimage, stats

from poster_ml import predicted_fresh
from poster_ml.evaluation.intervals import mean_interval
from poster_ml.explain.cam import upsample
from poster_ml.explain.localisation import finding_shares, named
from poster_ml.models.predict import predict_probabilities

CELLS_PER_SIDE = 6  # Cells per side: a cell is a sixth of the poster's side.
STEPS = 4  # Points of a curve past its start: a quarter of the cells removed (or revealed) a step.
BLUR = 0.1  # Standard deviation of the reference's blur, as a share of the poster's side.

Predict = Callable[[np.ndarray], np.ndarray]  # uint8 posters -> probability of fresh.


def blurred(images: np.ndarray) -> np.ndarray:
    sigma = BLUR * images.shape[1]
    return np.stack(
        [ndimage.gaussian_filter(image.astype(np.float32), (sigma, sigma, 0)) for image in images]
    ).astype(images.dtype)


def cell_masks(height: int, width: int, grid: int = CELLS_PER_SIDE) -> np.ndarray:
    """(grid * grid, height, width) boolean masks of the cells, row by row."""
    rows = np.minimum(np.arange(height) * grid // height, grid - 1)
    columns = np.minimum(np.arange(width) * grid // width, grid - 1)
    cell = rows[:, None] * grid + columns[None, :]
    return cell[None] == np.arange(grid * grid)[:, None, None]


def cell_scores(maps: np.ndarray, grid: int = CELLS_PER_SIDE) -> np.ndarray:
    """Each map's mean over each cell: (n, grid * grid)."""
    masks = cell_masks(maps.shape[1], maps.shape[2], grid)
    totals = np.einsum("nhw,chw->nc", maps.astype(np.float64), masks)
    return totals / masks.reshape(len(masks), -1).sum(axis=1)


def ranked_cells(scores: np.ndarray) -> np.ndarray:
    """Cells from most to least important; ties keep the cells' own order."""
    return np.argsort(-scores, axis=1, kind="stable")


def class_probability(predict: Predict, images: np.ndarray, fresh: np.ndarray) -> np.ndarray:
    """The probability of each poster's explained class (fresh or rotten)."""
    probabilities = predict(images)
    return np.where(fresh, probabilities, 1 - probabilities)


def perturbation_curves(
    predict: Predict,
    images: np.ndarray,
    reference: np.ndarray,
    orders: np.ndarray,
    fresh: np.ndarray,
    steps: int = STEPS,
    ends: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves, (n, steps + 1) each, for cells removed (or revealed)
    in `orders` (n, cells), `cells / steps` at a time. Every curve starts and ends at the
    untouched poster or the reference; `ends` (their class probabilities) spares those
    forward passes when several orders are followed on the same posters. All the
    perturbed posters of a call go through the model at once."""
    count, cells = orders.shape
    if ends is None:
        ends = (
            class_probability(predict, images, fresh),
            class_probability(predict, reference, fresh),
        )
    masks = cell_masks(images.shape[1], images.shape[2], round(cells**0.5))
    deleted, inserted = [], []
    for step in range(1, steps):
        taken = orders[:, : step * cells // steps]
        hidden = np.stack([masks[cells_taken].any(axis=0) for cells_taken in taken])[..., None]
        deleted.append(np.where(hidden, reference, images))
        inserted.append(np.where(hidden, images, reference))
    interior = np.empty((2, count, 0))
    if steps > 1:
        batch = np.concatenate(deleted + inserted)
        probabilities = class_probability(predict, batch, np.tile(fresh, 2 * (steps - 1)))
        interior = probabilities.reshape(2, steps - 1, count).transpose(0, 2, 1)
    original, blank = ends
    deletion = np.column_stack([original, interior[0], blank])
    insertion = np.column_stack([blank, interior[1], original])
    return deletion, insertion


def curve_area(curves: np.ndarray) -> np.ndarray:
    """Area under each curve on [0, 1] (trapezoid rule over equal steps)."""
    steps = curves.shape[1] - 1
    return (curves[:, 1:] + curves[:, :-1]).sum(axis=1) / (2 * steps)


def occlusion_maps(
    predict: Predict,
    images: np.ndarray,
    reference: np.ndarray,
    fresh: np.ndarray,
    grid: int = CELLS_PER_SIDE,
    base: np.ndarray | None = None,
) -> np.ndarray:
    """Each cell's importance: the drop of the explained class's probability when that cell
    alone shows the reference. (n, grid * grid); every occluded poster in one call. `base`
    (the untouched posters' probabilities) spares their forward pass when it is known."""
    masks = cell_masks(images.shape[1], images.shape[2], grid)[..., None]
    occluded = np.where(masks[None], reference[:, None], images[:, None])
    flat = occluded.reshape(-1, *images.shape[1:])
    if base is None:
        base = class_probability(predict, images, fresh)
    after = class_probability(predict, flat, np.repeat(fresh, len(masks)))
    return base[:, None] - after.reshape(len(images), len(masks))


def rank_correlations(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Spearman's correlation of each poster's cell scores with the reference's (NaN where
    either is constant, as a blank map is)."""
    correlations = np.full(len(scores), np.nan)
    for poster, (mine, theirs) in enumerate(zip(scores, reference, strict=True)):
        if np.ptp(mine) > 0 and np.ptp(theirs) > 0:
            correlations[poster] = stats.spearmanr(mine, theirs).statistic
    return correlations


BASELINES = ("random", "prior")


@dataclasses.dataclass(frozen=True)
class FaithfulnessPosters:
    """The posters measured, by group (most fresh, most rotten), how to read them, and the
    maps the explanation already computed for them."""

    groups: dict[str, np.ndarray]
    images_of: Callable[[np.ndarray], np.ndarray]
    maps_of: Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class Measured:
    metrics: dict[str, float]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]  # Order -> mean deletion, insertion curve.


def faithfulness_measures(inputs, posters: FaithfulnessPosters) -> Measured:
    """Every map's deletion and insertion areas beside a random order and the location
    prior, its rank correlation with occlusion, and the finding's shares (`inputs` is the
    explanation's ExplanationInputs)."""
    started = time.perf_counter()
    rows = np.concatenate(list(posters.groups.values()))
    if len(rows) < 2:
        return Measured({}, {})
    images = posters.images_of(rows)
    fresh = predicted_fresh(inputs.probabilities[rows])

    def predict(batch: np.ndarray) -> np.ndarray:
        return predict_probabilities(inputs.model, batch)

    reference = blurred(images)
    # The untouched and the blurred posters' probabilities: every curve's ends, and
    # occlusion's starting point.
    ends = class_probability(predict, images, fresh), class_probability(predict, reference, fresh)
    occlusion = occlusion_maps(predict, images, reference, fresh, base=ends[0])
    maps = poster_sized_maps(posters.maps_of(rows), images, occlusion)
    scores = {method: cell_scores(values) for method, values in maps.items()}
    scores["occlusion"] = occlusion  # Exact, not through the resized map.
    scores["random"] = np.random.default_rng(inputs.seed).random(occlusion.shape)
    if {"fresh", "rotten"} <= set(inputs.priors):
        maps["prior"] = np.stack([inputs.priors["fresh" if f else "rotten"] for f in fresh])
        scores["prior"] = cell_scores(maps["prior"])
    metrics, curves = order_measures(predict, images, reference, fresh, ends, scores, inputs)
    metrics |= finding_shares(inputs.split, rows, posters.groups, maps, inputs.samples, inputs.seed)
    metrics["faithfulness_posters"] = float(len(rows))
    metrics["faithfulness_seconds"] = time.perf_counter() - started
    return Measured(metrics, curves)


def poster_sized_maps(maps: dict, images: np.ndarray, occlusion: np.ndarray) -> dict:
    """Each method's maps at the poster's size, and occlusion's as a map. A 1 x 1 map
    (InceptionV3's at small sizes) ranks nothing: it is left out, as from localisation."""
    size = images.shape[1:3]
    sized = {
        method: upsample(values, *size)
        for method, values in maps.items()
        if values.shape[1] * values.shape[2] > 1
    }
    sized["occlusion"] = upsample(
        np.maximum(occlusion, 0).reshape(-1, CELLS_PER_SIDE, CELLS_PER_SIDE), *size
    )
    return sized


def order_measures(predict, images, reference, fresh, ends, scores: dict, inputs):
    """Deletion and insertion areas of every order, the methods' occlusion correlations,
    and each method's deletion beside the baselines', all with intervals."""
    samples, seed = inputs.samples, inputs.seed
    metrics: dict[str, float] = {}
    areas, curves = {}, {}
    for order, cell_values in scores.items():
        deletion, insertion = perturbation_curves(
            predict, images, reference, ranked_cells(cell_values), fresh, ends=ends
        )
        areas[order] = curve_area(deletion), curve_area(insertion)
        curves[order] = deletion.mean(axis=0), insertion.mean(axis=0)
        for kind, values in zip(("deletion", "insertion"), areas[order], strict=True):
            metrics |= named(f"{order}_{kind}_auc", mean_interval(values, samples, seed))
    for method in (name for name in scores if name not in BASELINES):
        if method != "occlusion":
            correlations = rank_correlations(scores[method], scores["occlusion"])
            metrics |= named(
                f"{method}_occlusion_spearman", mean_interval(correlations, samples, seed)
            )
        for baseline in (name for name in BASELINES if name in areas):
            difference = mean_interval(areas[method][0] - areas[baseline][0], samples, seed)
            metrics |= named(f"{method}_deletion_minus_{baseline}", difference)
    return metrics, curves
