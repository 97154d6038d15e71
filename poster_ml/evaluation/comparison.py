"""The register gate's statistics: a new model's test AUC against the champion's on the
same posters, with a paired bootstrap interval of the difference."""

from __future__ import annotations

import dataclasses

import numpy as np

from poster_ml.evaluation.intervals import bootstrap_interval
from poster_ml.evaluation.metrics import roc_auc


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


def auc_difference(labels: np.ndarray, new: np.ndarray, old: np.ndarray) -> float:
    return roc_auc(labels, new) - roc_auc(labels, old)


def paired_auc_comparison(
    labels: np.ndarray, new: np.ndarray, old: np.ndarray, samples: int = 1000, seed: int = 0
) -> PairedComparison:
    labels = labels.astype(int)
    # Both models' scores resample together, row by row: that is what makes it paired.
    low, high = bootstrap_interval(auc_difference, (labels, new, old), samples, seed)
    new_auc, old_auc = roc_auc(labels, new), roc_auc(labels, old)
    return PairedComparison(new_auc, old_auc, new_auc - old_auc, low, high)


STUDY_QUESTIONS = (
    ("Does regularisation help?", "regularized_cnn", "basic_cnn"),
    ("Does augmentation help?", "regularized_cnn_aug", "regularized_cnn"),
    ("Does augmentation help VGG16's features?", "vgg16_features_aug", "vgg16_features"),
    ("Does fine-tuning VGG16 help?", "vgg16_finetune_aug", "vgg16_features_aug"),
)
"""The study's questions, each a pair of variants that differ in one thing: (question,
the variant with it, the variant without)."""


def study_answers(
    labels: np.ndarray, answers: dict[str, np.ndarray], samples: int = 1000, seed: int = 0
) -> list[tuple[str, str, str, PairedComparison]]:
    """Each study question whose two variants were evaluated, answered on the same test
    posters by the paired difference of their test AUCs: (question, with, without,
    comparison)."""
    return [
        (
            question,
            new,
            old,
            paired_auc_comparison(labels, answers[new], answers[old], samples, seed),
        )
        for question, new, old in STUDY_QUESTIONS
        if new in answers and old in answers
    ]
