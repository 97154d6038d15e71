"""Test-split metrics with bootstrap intervals, and the tables of per-poster predictions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from sklearn import metrics

from poster_ml import CLASS_NAMES, DECISION_THRESHOLD, predicted_fresh


@dataclasses.dataclass(frozen=True)
class Interval:
    low: float
    high: float


def bootstrap_interval(
    labels: np.ndarray,
    probabilities: np.ndarray,
    statistic,
    samples: int,
    seed: int,
    level: float = 0.95,
) -> Interval:
    """Percentile bootstrap interval of `statistic(labels, probabilities)` over resampled posters."""
    rng = np.random.default_rng(seed)
    count = len(labels)
    values = []
    for _ in range(samples):
        chosen = rng.integers(0, count, count)
        # AUC is undefined on a resample holding one class only; such draws are skipped.
        if labels[chosen].min() != labels[chosen].max():
            values.append(statistic(labels[chosen], probabilities[chosen]))
    tail = (1 - level) / 2 * 100
    return Interval(float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail)))


def accuracy(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float = DECISION_THRESHOLD
) -> float:
    return float(np.mean((probabilities >= threshold) == labels.astype(bool)))


def evaluate_probabilities(
    labels: np.ndarray,
    probabilities: np.ndarray,
    majority_class: int,
    samples: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Every headline metric of the test split, with 95 % intervals for accuracy and ROC AUC.

    `majority_class` is the training split's majority class: always predicting it is
    the baseline a model has to beat (0.584 in the study).
    """
    labels = labels.astype(int)
    predicted = predicted_fresh(probabilities).astype(int)
    report = metrics.classification_report(
        labels,
        predicted,
        labels=[0, 1],
        target_names=list(CLASS_NAMES),
        output_dict=True,
        zero_division=0,
    )
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
            results[f"{measure.replace('-score', '')}_{key}"] = float(report[name][measure])
    for name, statistic in (("accuracy", accuracy), ("roc_auc", metrics.roc_auc_score)):
        interval = bootstrap_interval(labels, probabilities, statistic, samples, seed)
        results[f"{name}_ci_low"], results[f"{name}_ci_high"] = interval.low, interval.high
    return results


def classification_report_text(labels: np.ndarray, probabilities: np.ndarray) -> str:
    return metrics.classification_report(
        labels.astype(int),
        predicted_fresh(probabilities).astype(int),
        labels=[0, 1],
        target_names=list(CLASS_NAMES),
        digits=4,
        zero_division=0,
    )


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


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """Test AUC of a new model minus an old one's, on the same posters, with a paired
    bootstrap 95 % interval (the same resampled posters score both models)."""

    new_auc: float
    old_auc: float
    difference: float
    low: float
    high: float

    @property
    def new_is_better(self) -> bool:
        """Better beyond resampling noise: the whole interval lies above zero."""
        return self.low > 0

    def __str__(self) -> str:
        return f"test AUC {self.new_auc:.3f} against {self.old_auc:.3f}: difference {self.difference:+.3f} (95 % interval {self.low:+.3f} to {self.high:+.3f})"


def auc_difference(labels: np.ndarray, pair: np.ndarray) -> float:
    """Test AUC of the first column of scores minus the second's."""
    return metrics.roc_auc_score(labels, pair[:, 0]) - metrics.roc_auc_score(labels, pair[:, 1])


def paired_auc_comparison(
    labels: np.ndarray, new: np.ndarray, old: np.ndarray, samples: int = 1000, seed: int = 0
) -> PairedComparison:
    labels = labels.astype(int)
    # Both models' scores resample together, row by row: that is what makes it paired.
    interval = bootstrap_interval(
        labels, np.column_stack([new, old]), auc_difference, samples, seed
    )
    new_auc, old_auc = (
        float(metrics.roc_auc_score(labels, new)),
        float(metrics.roc_auc_score(labels, old)),
    )
    return PairedComparison(new_auc, old_auc, new_auc - old_auc, interval.low, interval.high)
