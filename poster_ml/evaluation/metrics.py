"""Test-split metrics with bootstrap intervals, the classification report, and the table of
per-poster predictions."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TypeVar

import numpy as np
import pandas as pd
from scipy.stats import rankdata
from sklearn import metrics

from poster_ml import CLASS_NAMES, DECISION_THRESHOLD, predicted_fresh
from poster_ml.evaluation.chance import spread
from poster_ml.evaluation.intervals import bootstrap_interval

Ranked = TypeVar("Ranked")


def ranked_by_validation_auc(
    items: Iterable[Ranked], auc_of: Callable[[Ranked], float | None]
) -> list[Ranked]:
    """Best validation AUC first: the one order that chooses a model (the leaderboard,
    evaluate's table and report, register's candidate). A missing AUC ranks last; ties
    keep their order."""

    def key(item: Ranked) -> float:
        value = auc_of(item)
        return -math.inf if value is None or math.isnan(value) else float(value)

    return sorted(items, key=key, reverse=True)


def accuracy(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float = DECISION_THRESHOLD
) -> float:
    return float(np.mean(predicted_fresh(probabilities, threshold) == labels.astype(bool)))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The exact ROC AUC, or NaN where it is undefined (a resample that holds one class).

    It is the Mann-Whitney statistic: the chance that a fresh poster scores above a rotten
    one, ties counting half, from the scores' ranks. That is the area under the ROC curve
    drawn through every threshold, scikit-learn's `roc_auc_score` to the last digits,
    without its input checks, which cost many times the sum itself in a bootstrap of a
    thousand resamples."""
    positive = np.asarray(labels).astype(bool)
    fresh = int(positive.sum())
    rotten = len(positive) - fresh
    if fresh == 0 or rotten == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - fresh * (fresh + 1) / 2) / (fresh * rotten))


def ranking_figures(
    labels: np.ndarray,
    probabilities: np.ndarray,
    majority_class: int,
    samples: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """What selects a model and what the chance verdict reads, on one split: the exact ROC
    AUC (the area through every threshold, `roc_auc`) and accuracy, each with its 95 %
    bootstrap interval, the share of `majority_class` (the training split's; always
    answering it is the baseline), and the spread of the answers. Non-finite answers (a
    diverged training) give NaN figures rather than an error."""
    labels = labels.astype(int)
    finite = bool(np.isfinite(probabilities).all())
    nan = float("nan")
    figures = {
        "majority_baseline": float(np.mean(labels == majority_class)),
        "spread": spread(probabilities) if finite else nan,
    }
    for name, statistic in (("accuracy", accuracy), ("roc_auc", roc_auc)):
        value, (low, high) = (
            (
                statistic(labels, probabilities),
                bootstrap_interval(statistic, (labels, probabilities), samples, seed),
            )
            if finite
            else (nan, (nan, nan))
        )
        figures |= {name: value, f"{name}_ci_low": low, f"{name}_ci_high": high}
    return figures


def classification_report(
    labels: np.ndarray, probabilities: np.ndarray, as_dict: bool = False
) -> str | dict:
    """scikit-learn's report of precision, recall and F1 per class, as text or as a dict."""
    return metrics.classification_report(
        labels.astype(int),
        predicted_fresh(probabilities).astype(int),
        labels=[0, 1],
        target_names=list(CLASS_NAMES),
        digits=4,
        output_dict=as_dict,
        zero_division=0,
    )


def evaluate_probabilities(
    labels: np.ndarray,
    probabilities: np.ndarray,
    majority_class: int,
    samples: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Every headline metric of the test split, with 95 % intervals for accuracy and ROC AUC.

    `majority_class` is the training split's majority class: always predicting it is
    the baseline a model has to beat (RESULTS.md has the study's value).
    """
    labels = labels.astype(int)
    report = classification_report(labels, probabilities, as_dict=True)
    results = ranking_figures(labels, probabilities, majority_class, samples, seed) | {
        "pr_auc": float(metrics.average_precision_score(labels, probabilities)),
        "log_loss": float(
            metrics.log_loss(labels, np.clip(probabilities, 1e-7, 1 - 1e-7), labels=[0, 1])
        ),
        "brier": float(metrics.brier_score_loss(labels, probabilities)),
        "count": float(len(labels)),
    }
    for name in (*CLASS_NAMES, "weighted avg"):
        key = name.replace(" avg", "")
        for measure in ("precision", "recall", "f1-score"):
            results[f"{measure.replace('-score', '')}_{key}"] = float(report[name][measure])  # type: ignore[index]
    return results


def predictions_table(split: pd.DataFrame, probabilities: np.ndarray) -> pd.DataFrame:
    """One row per test poster: id, source, true class, probability of fresh, prediction."""
    predicted = predicted_fresh(probabilities)
    return pd.DataFrame(
        {
            "id": split["id"],
            "source": split["source"],
            "true_class": [CLASS_NAMES[label] for label in split["label"]],
            "probability_fresh": probabilities,
            "predicted_class": np.where(predicted, "fresh", "rotten"),
            "correct": predicted == split["label"].astype(bool).to_numpy(),
        }
    )
