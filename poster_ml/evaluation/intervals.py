"""The one bootstrap of the project: percentile intervals over resampled test posters."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def bootstrap_interval(
    statistic: Callable[..., float],
    arrays: tuple[np.ndarray, ...],
    samples: int,
    seed: int,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(*arrays)` over posters drawn with
    replacement (the same rows of every array, which makes a comparison paired).

    A draw on which the statistic is undefined returns NaN and is left out: an AUC on a
    resample that holds one class only, say. With no defined draw the interval is NaN.
    """
    count = len(arrays[0])
    draws = np.random.default_rng(seed).integers(0, count, (samples, count))
    values = np.array([statistic(*(array[rows] for array in arrays)) for rows in draws])
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def mean_interval(values: np.ndarray, samples: int, seed: int) -> tuple[float, float, float]:
    """Mean and its bootstrap 95 % interval over posters (NaNs, undefined values, left out)."""
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    return (float(values.mean()), *bootstrap_interval(np.mean, (values,), samples, seed))


def ratio_interval(
    scores: np.ndarray, baseline: np.ndarray, samples: int, seed: int
) -> tuple[float, float, float]:
    """mean(scores) / mean(baseline), with its bootstrap 95 % interval over posters."""

    def ratio(first: np.ndarray, second: np.ndarray) -> float:
        return float(first.mean() / second.mean())

    return (ratio(scores, baseline), *bootstrap_interval(ratio, (scores, baseline), samples, seed))
