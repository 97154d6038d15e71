"""Figures people would rather look at than read. Each function returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # Headless: figures are saved as artifacts, never shown.

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from poster_ml import CLASS_NAMES


def class_balance_chart(counts: dict[str, dict[str, int]]) -> plt.Figure:
    """Grouped bars: posters per class in each split."""
    splits = list(counts)
    figure, axes = plt.subplots(figsize=(6, 3.5))
    positions = np.arange(len(splits))
    for offset, name in zip((-0.2, 0.2), reversed(CLASS_NAMES)):
        values = [counts[split][name] for split in splits]
        bars = axes.bar(positions + offset, values, width=0.4, label=name, color="tab:red" if name == "fresh" else "tab:green")
        axes.bar_label(bars)
    axes.set_xticks(positions, splits)
    axes.set_ylabel("posters")
    axes.set_title("Class balance per split")
    axes.legend()
    figure.tight_layout()
    return figure


def sample_grid(images_by_class: dict[str, np.ndarray], columns: int = 8) -> plt.Figure:
    """One row of sample posters per class, each row labelled with its class."""
    rows = len(images_by_class)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.6), squeeze=False)
    for row, (name, images) in enumerate(images_by_class.items()):
        for column in range(columns):
            axis = axes[row, column]
            axis.axis("off")
            if column < len(images):
                axis.imshow(images[column])
        axes[row, 0].set_title(name, loc="left", fontsize=10)
    figure.suptitle("Sample posters per class")
    figure.tight_layout()
    return figure


def training_curves(history: pd.DataFrame, title: str) -> plt.Figure:
    """Training and validation accuracy and loss per epoch, as the study drew them."""
    figure, (accuracy_axis, loss_axis) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history) + 1)
    for axis, metric in ((accuracy_axis, "accuracy"), (loss_axis, "loss")):
        axis.plot(epochs, history[metric], "bo-", label=f"training {metric}")
        axis.plot(epochs, history[f"val_{metric}"], "r^-", label=f"validation {metric}")
        axis.set_xlabel("epoch")
        axis.set_title(f"Training and validation {metric}")
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    return figure
