"""Whether a model's answers say anything: the one verdict that the train leaderboard, the
evaluate step's lines and tables, the report, the ROC legend and register's gate use.

A model is **no better than chance** on a split when the 95 % interval of its AUC reaches
down to 0.5, or when its accuracy does not beat always answering the majority class. It is
**collapsed** when its answers barely vary: every poster gets nearly the same probability,
whatever it shows (the base rate, typically), so that its ranking is noise.
"""

from __future__ import annotations

import dataclasses

import numpy as np

COLLAPSED_SPREAD = 0.02
"""Answers whose highest and lowest probability lie closer than this are collapsed: on a
probability scale, 0.02 is narrower than any two posters a learning model tells apart."""

NO_BETTER = "no better than chance"


@dataclasses.dataclass(frozen=True)
class ChanceVerdict:
    """What a split's figures say about a model; `beats_chance` is what the gate needs."""

    auc_low: float
    accuracy: float
    majority_share: float
    spread: float

    @property
    def collapsed(self) -> bool:
        return self.spread < COLLAPSED_SPREAD

    @property
    def beats_chance(self) -> bool:
        """The AUC's interval lies above 0.5 and the accuracy beats the majority class."""
        return (
            not self.collapsed
            and bool(self.auc_low > 0.5)
            and bool(self.accuracy > self.majority_share)
        )

    def words(self) -> str:
        """'' for a model that beats chance; else what to call it, and why, in a phrase."""
        if self.collapsed:
            return f"collapsed: every answer within {self.spread:.4f}, {NO_BETTER}"
        if self.beats_chance:
            return ""
        reasons = []
        if not self.auc_low > 0.5:
            reasons.append("its AUC interval reaches 0.5")
        if not self.accuracy > self.majority_share:
            reasons.append(
                f"its accuracy {self.accuracy:.3f} does not beat the majority class's "
                f"{self.majority_share:.3f}"
            )
        return f"{NO_BETTER}: " + " and ".join(reasons)

    def label(self) -> str:
        """The short mark for a table or a legend: '', 'no better than chance' or 'collapsed'."""
        return "collapsed" if self.collapsed else "" if self.beats_chance else NO_BETTER

    def column(self) -> str:
        """The mark in a table's verdict column, where a blank would read as unknown."""
        return self.label() or "beats chance"


def spread(probabilities: np.ndarray) -> float:
    """How far apart the model's answers lie: its highest probability minus its lowest."""
    return float(np.max(probabilities) - np.min(probabilities)) if len(probabilities) else 0.0


def verdict_of(row: dict, spread_key: str = "spread") -> ChanceVerdict:
    """The verdict of a results row: `roc_auc_ci_low`, `accuracy`, `majority_baseline` and
    the probabilities' spread, as evaluate_probabilities writes them."""
    return ChanceVerdict(
        float(row["roc_auc_ci_low"]),
        float(row["accuracy"]),
        float(row["majority_baseline"]),
        float(row.get(spread_key, 1.0)),
    )
