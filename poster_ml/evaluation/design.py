"""The study's finding measured on any posters from their detected design attributes, and
its plainest rival explanation tested: a model that sees only those attributes.

- Each attribute against the label on the test split: the fresh share of the posters above
  the attribute's training median and of those at or below it, each with a Wilson 95 %
  interval (for the number of faces, whose median is often 0, "above" means any face).
- The design baseline: a logistic regression on the attributes alone (standardised,
  missing values filled with the training median), fitted on the training split with its
  regularisation chosen by exact validation AUC, then read once on the test split. Its
  test AUC stands beside the CNN's with the paired bootstrap interval of the difference:
  "the CNN sees more than title size and faces" holds where that interval lies above 0.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from poster_ml.data.annotations import ATTRIBUTES, STATUS_COLUMN
from poster_ml.evaluation.comparison import PairedComparison, paired_auc_comparison
from poster_ml.evaluation.intervals import bootstrap_interval
from poster_ml.evaluation.metrics import roc_auc

REGULARISATION = (0.01, 0.1, 1.0, 10.0, 100.0)  # Inverse strengths C tried on validation.
Z_95 = 1.959964


def annotated(split: pd.DataFrame) -> bool:
    """Whether a split carries detected attributes on at least one poster."""
    return STATUS_COLUMN in split.columns and bool((split[STATUS_COLUMN] == "ok").any())


def wilson_interval(successes: int, trials: int) -> tuple[float, float]:
    if trials == 0:
        return float("nan"), float("nan")
    share = successes / trials
    centre = (share + Z_95**2 / (2 * trials)) / (1 + Z_95**2 / trials)
    half = Z_95 * np.sqrt(share * (1 - share) / trials + Z_95**2 / (4 * trials**2))
    half /= 1 + Z_95**2 / trials
    return float(centre - half), float(centre + half)


def attribute_rows(train: pd.DataFrame, test: pd.DataFrame) -> pd.DataFrame:
    """One row per attribute: its training median, and the test split's fresh share above
    and at-or-below it, with intervals and counts (annotated posters only)."""
    train = train[train[STATUS_COLUMN] == "ok"]
    test = test[test[STATUS_COLUMN] == "ok"]
    labels = test["label"].to_numpy().astype(bool)
    rows = []
    for name in ATTRIBUTES:
        median = float(np.nanmedian(train[name].to_numpy(dtype=float)))
        above = test[name].to_numpy(dtype=float) > median
        row: dict = {"attribute": name, "training_median": median}
        for side, members in (("above", above), ("below", ~above)):
            fresh = int(labels[members].sum())
            count = int(members.sum())
            low, high = wilson_interval(fresh, count)
            row |= {
                f"fresh_share_{side}": fresh / count if count else float("nan"),
                f"fresh_share_{side}_ci_low": low,
                f"fresh_share_{side}_ci_high": high,
                f"posters_{side}": count,
            }
        rows.append(row)
    return pd.DataFrame(rows)


@dataclasses.dataclass(frozen=True)
class DesignBaseline:
    regularisation: float  # The C chosen on validation.
    validation_auc: float
    test_auc: float
    test_auc_ci: tuple[float, float]
    cnn_minus_design: PairedComparison  # The CNN's test AUC minus the baseline's, paired.
    coefficients: dict[str, float]  # Per standardised attribute: its weight toward fresh.

    def metrics(self) -> dict[str, float]:
        comparison = self.cnn_minus_design
        return {
            "design_baseline_val_auc": self.validation_auc,
            "design_baseline_roc_auc": self.test_auc,
            "design_baseline_roc_auc_ci_low": self.test_auc_ci[0],
            "design_baseline_roc_auc_ci_high": self.test_auc_ci[1],
            "cnn_minus_design_auc": comparison.difference,
            "cnn_minus_design_auc_ci_low": comparison.low,
            "cnn_minus_design_auc_ci_high": comparison.high,
        }


def attribute_matrix(split: pd.DataFrame) -> np.ndarray:
    return split[list(ATTRIBUTES)].to_numpy(dtype=float)


def design_baseline(
    splits: dict[str, pd.DataFrame], cnn_test: np.ndarray, samples: int, seed: int
) -> DesignBaseline:
    """Fits the attribute-only model on train, chooses C on validation, reads test once;
    `cnn_test` is the CNN's probabilities on the test split, in the split's order."""
    train, validation, test = (splits[name] for name in ("train", "validation", "test"))
    fitted = {}
    for strength in REGULARISATION:
        model = make_pipeline(
            SimpleImputer(strategy="median"),
            StandardScaler(),
            LogisticRegression(C=strength, max_iter=1000),
        )
        model.fit(attribute_matrix(train), train["label"].to_numpy())
        scores = model.predict_proba(attribute_matrix(validation))[:, 1]
        fitted[strength] = (roc_auc(validation["label"].to_numpy(), scores), model)
    # The best validation AUC; NaN (one class in validation) ranks last, ties keep C's order.
    strength = max(fitted, key=lambda c: np.nan_to_num(fitted[c][0], nan=-1.0))
    validation_auc, model = fitted[strength]
    labels = test["label"].to_numpy().astype(int)
    design_test = model.predict_proba(attribute_matrix(test))[:, 1]
    interval = bootstrap_interval(roc_auc, (labels, design_test), samples, seed)
    weights = model[-1].coef_[0]
    return DesignBaseline(
        strength,
        validation_auc,
        roc_auc(labels, design_test),
        interval,
        paired_auc_comparison(labels, cnn_test, design_test, samples, seed),
        dict(zip(ATTRIBUTES, np.round(weights, 4).tolist(), strict=True)),
    )
