"""Test-split metrics with bootstrap intervals, the classification report, and the table of
per-poster predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import metrics

from poster_ml import CLASS_NAMES, DECISION_THRESHOLD, predicted_fresh
from poster_ml.evaluation.intervals import bootstrap_interval


def accuracy(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float = DECISION_THRESHOLD
) -> float:
    return float(np.mean((probabilities >= threshold) == labels.astype(bool)))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC, or NaN where it is undefined: a resample that holds one class only."""
    if labels.min() == labels.max():
        return float("nan")
    return float(metrics.roc_auc_score(labels, scores))


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
    results = {
        "accuracy": accuracy(labels, probabilities),
        "roc_auc": float(metrics.roc_auc_score(labels, probabilities)),
        "pr_auc": float(metrics.average_precision_score(labels, probabilities)),
        "log_loss": float(
            metrics.log_loss(labels, np.clip(probabilities, 1e-7, 1 - 1e-7), labels=[0, 1])
        ),
        "brier": float(metrics.brier_score_loss(labels, probabilities)),
        "majority_baseline": float(np.mean(labels == majority_class)),
        "count": float(len(labels)),
    }
    for name in (*CLASS_NAMES, "weighted avg"):
        key = name.replace(" avg", "")
        for measure in ("precision", "recall", "f1-score"):
            results[f"{measure.replace('-score', '')}_{key}"] = float(report[name][measure])  # type: ignore[index]
    for name, statistic in (("accuracy", accuracy), ("roc_auc", roc_auc)):
        results[f"{name}_ci_low"], results[f"{name}_ci_high"] = bootstrap_interval(
            statistic, (labels, probabilities), samples, seed
        )
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
