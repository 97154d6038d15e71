"""Tables people read: the training leaderboard and the study's results table."""

from __future__ import annotations

from typing import Any

import pandas as pd

from poster_ml.evaluation.chance import verdict_of
from poster_ml.evaluation.metrics import ranked_by_validation_auc


def leaderboard(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The variants ranked by validation AUC, best first, like the study's table."""
    return pd.DataFrame(ranked_by_validation_auc(rows, lambda row: row.get("val_auc")))


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table; floats rounded to `digits`."""

    def cell(value: Any) -> str:
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    header = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in table.columns) + " |"
    body = [
        "| " + " | ".join(cell(value) for value in row) + " |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join([header, rule, *body]) + "\n"


def results_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The study's results table: train, validation and test accuracy, test AUC with its
    95 % interval beside the majority baseline, whether it beats chance on test
    (evaluation/chance.py), whether the base was really pretrained,
    epochs and time, one row per variant, in the order given (the evaluate step ranks
    them by validation AUC, which selects; the test columns only report)."""
    return pd.DataFrame(
        [
            {
                "variant": row["variant"],
                "pretrained": row.get("pretrained"),
                "train_accuracy": row.get("train_accuracy"),
                "val_accuracy": row.get("val_accuracy"),
                "val_auc": row.get("val_auc"),
                "test_accuracy": row["accuracy"],
                "test_accuracy_95ci": interval(row, "accuracy"),
                "majority_baseline": row["majority_baseline"],
                "test_auc": row["roc_auc"],
                "test_auc_95ci": interval(row, "roc_auc"),
                "verdict": verdict_of(row).column(),
                "epochs": row.get("epochs"),
                "seconds": row.get("seconds"),
            }
            for row in rows
        ]
    )


def localisation_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Per variant and CAM method: the share of map mass in the planted regions, both
    baselines, and the ratio to the stronger one with its 95 % interval."""
    records = []
    for row in rows:
        for method in ("grad_cam", "layer_cam"):
            if f"{method}_localisation_scorable" not in row:
                continue
            scorable = row[f"{method}_localisation_scorable"] > 0
            records.append(
                {
                    "variant": row["variant"],
                    "method": method,
                    "score": row.get(f"{method}_localisation")
                    if scorable
                    else "not scorable (1 x 1 map)",
                    "prior_baseline": row.get(f"{method}_localisation_prior_baseline"),
                    "permutation_baseline": row.get(f"{method}_localisation_permutation_baseline"),
                    "ratio_to_stronger": row.get(f"{method}_localisation_ratio"),
                    "ratio_95ci": interval(row, f"{method}_localisation_ratio")
                    if scorable
                    else "-",
                }
            )
    return pd.DataFrame(
        records,
        columns=[
            "variant",
            "method",
            "score",
            "prior_baseline",
            "permutation_baseline",
            "ratio_to_stronger",
            "ratio_95ci",
        ],
    )


ORDERS = ("grad_cam", "layer_cam", "cam", "occlusion", "random", "prior")
# The finding's groups of posters (usage.extreme_rows), as the table titles them.
FINDING_GROUPS = {"most_fresh": "highest p(fresh)", "most_rotten": "lowest p(fresh)"}


def faithfulness_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Per variant and order: deletion and insertion areas with their intervals, the
    paired difference of the deletion area from the random order's and the prior's (below
    zero: the map finds what the model uses faster than the baseline), and the rank
    correlation with occlusion."""
    records = []
    for row in rows:
        for order in ORDERS:
            if f"{order}_deletion_auc" not in row:
                continue
            records.append(
                {
                    "variant": row["variant"],
                    "order": order,
                    "deletion_auc": row[f"{order}_deletion_auc"],
                    "deletion_95ci": interval(row, f"{order}_deletion_auc"),
                    "insertion_auc": row[f"{order}_insertion_auc"],
                    "insertion_95ci": interval(row, f"{order}_insertion_auc"),
                    "deletion_minus_random": optional_interval(
                        row, f"{order}_deletion_minus_random"
                    ),
                    "deletion_minus_prior": optional_interval(row, f"{order}_deletion_minus_prior"),
                    "spearman_with_occlusion": optional_interval(
                        row, f"{order}_occlusion_spearman"
                    ),
                }
            )
    return pd.DataFrame(records)


# The finding's regions: planted on synthetic posters, detected on any annotated ones.
FINDING_REGIONS = ("title", "people", "text", "faces")


def finding_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The study's finding: per variant, group of posters and map, its share of mass on the
    planted title and people (synthetic posters) and on the detected text and faces
    (annotated posters), the prior's row beside; "not measurable" where neither is known."""
    records = []
    for row in rows:
        if "faithfulness_posters" not in row:
            continue
        measured = any(key.startswith("finding_") for key in row)
        regions = [r for r in FINDING_REGIONS if any(k.endswith(f"_{r}_share") for k in row)]
        for group, title in FINDING_GROUPS.items():
            for order in ORDERS:
                name = f"finding_{group}_{order}"
                if measured and not any(f"{name}_{region}_share" in row for region in regions):
                    continue
                records.append(
                    {"variant": row["variant"], "posters": title, "map": order if measured else "-"}
                    | {
                        f"{region}_share": optional_interval(row, f"{name}_{region}_share")
                        for region in regions or ("title", "people")
                    }
                )
                if not measured:
                    break
    return pd.DataFrame(records)


def optional_interval(row: dict[str, Any], name: str) -> str:
    """'value (low-high)', or 'not measurable' where the row has no such measure."""
    if name not in row:
        return "not measurable"
    return f"{row[name]:.3f} ({interval(row, name)})"


def interval(row: dict[str, Any], name: str) -> str:
    return f"{row[name + '_ci_low']:.3f}-{row[name + '_ci_high']:.3f}"
