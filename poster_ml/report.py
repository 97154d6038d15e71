"""Tables people read: the training leaderboard and the study's results table."""

from __future__ import annotations

from typing import Any

import pandas as pd


def leaderboard(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The variants ranked by validation AUC, best first, like the study's table."""
    return pd.DataFrame(rows).sort_values("val_auc", ascending=False, kind="stable").reset_index(drop=True)


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table; floats rounded to `digits`."""
    def cell(value: Any) -> str:
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = ["| " + " | ".join(cell(value) for value in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def results_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The study's results table: train, validation and test accuracy, test AUC with its
    95 % interval, epochs and time, one row per variant, best test AUC first."""
    table = pd.DataFrame([
        {
            "variant": row["variant"],
            "train_accuracy": row.get("train_accuracy"),
            "val_accuracy": row.get("val_accuracy"),
            "test_accuracy": row["accuracy"],
            "test_accuracy_95ci": f"{row['accuracy_ci_low']:.3f}-{row['accuracy_ci_high']:.3f}",
            "test_auc": row["roc_auc"],
            "test_auc_95ci": f"{row['roc_auc_ci_low']:.3f}-{row['roc_auc_ci_high']:.3f}",
            "majority_baseline": row["majority_baseline"],
            "grad_cam_localisation_ratio": row.get("grad_cam_localisation_ratio"),
            "layer_cam_localisation_ratio": row.get("layer_cam_localisation_ratio"),
            "epochs": row.get("epochs"),
            "seconds": row.get("seconds"),
        }
        for row in rows
    ])
    return table.sort_values("test_auc", ascending=False, kind="stable").reset_index(drop=True)
