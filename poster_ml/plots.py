"""Figures people would rather look at than read. Each function returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # Headless: figures are saved as artifacts, never shown.

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from poster_ml import CLASS_NAMES


def png_bytes(figure: plt.Figure) -> bytes:
    """The figure as PNG, as MLflow's log_figure saves it, for pages that embed it."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def class_balance_chart(counts: dict[str, dict[str, int]]) -> plt.Figure:
    """Grouped bars: posters per class in each split."""
    splits = list(counts)
    figure, axes = plt.subplots(figsize=(6, 3.5))
    positions = np.arange(len(splits))
    for offset, name in zip((-0.2, 0.2), reversed(CLASS_NAMES), strict=True):
        values = [counts[split][name] for split in splits]
        bars = axes.bar(
            positions + offset,
            values,
            width=0.4,
            label=name,
            color="tab:red" if name == "fresh" else "tab:green",
        )
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


def roc_curves(
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str = "ROC curve"
) -> plt.Figure:
    """One or more ROC curves, {name: (false positive rate, true positive rate, AUC)},
    drawn by scikit-learn's RocCurveDisplay with the chance level."""
    from sklearn.metrics import RocCurveDisplay

    figure, axes = plt.subplots(figsize=(5.5, 5))
    for index, (name, (false_positive, true_positive, auc)) in enumerate(curves.items()):
        RocCurveDisplay(fpr=false_positive, tpr=true_positive, roc_auc=auc, name=name).plot(
            ax=axes, plot_chance_level=index == len(curves) - 1
        )
    axes.set_title(title)
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    return figure


def test_split_figures(
    labels: np.ndarray, probabilities: np.ndarray, name: str
) -> dict[str, plt.Figure]:
    """ROC, precision-recall, confusion-matrix and calibration figures of one model on the
    test split, each drawn by scikit-learn's own display (with its chance level)."""
    from sklearn.calibration import CalibrationDisplay
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    from poster_ml import predicted_fresh

    figures = {}
    for file_name, draw in (
        (
            "roc_curve.png",
            lambda axes: RocCurveDisplay.from_predictions(
                labels, probabilities, name=name, plot_chance_level=True, ax=axes
            ),
        ),
        (
            "precision_recall_curve.png",
            lambda axes: PrecisionRecallDisplay.from_predictions(
                labels, probabilities, name=name, plot_chance_level=True, ax=axes
            ),
        ),
        (
            "confusion_matrix.png",
            lambda axes: ConfusionMatrixDisplay.from_predictions(
                labels.astype(int),
                predicted_fresh(probabilities).astype(int),
                labels=[0, 1],
                display_labels=list(CLASS_NAMES),
                cmap="Blues",
                colorbar=False,
                ax=axes,
            ),
        ),
        (
            "reliability_curve.png",
            lambda axes: CalibrationDisplay.from_predictions(
                labels, probabilities, n_bins=10, strategy="quantile", name=name, ax=axes
            ),
        ),
    ):
        figure, axes = plt.subplots(figsize=(5.5, 5))
        draw(axes)
        axes.set_title(f"{name}: {file_name.removesuffix('.png').replace('_', ' ')} (test)")
        figure.tight_layout()
        figures[file_name] = figure
    return figures


ORDER_STYLES = {"random": ":", "prior": "--"}  # The baselines, dotted and dashed.


def faithfulness_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> plt.Figure:
    """Mean deletion and insertion curves of every map's order and of the baselines."""
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, kind, position in ((axes[0], "deletion", 0), (axes[1], "insertion", 1)):
        for order, pair in curves.items():
            shares = np.linspace(0, 1, len(pair[position]))
            axis.plot(shares, pair[position], ORDER_STYLES.get(order, "-"), label=order)
        axis.set_xlabel(f"share of the poster {'removed' if kind == 'deletion' else 'revealed'}")
        axis.set_title(f"{kind} ({'lower' if kind == 'deletion' else 'higher'} is more faithful)")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("p(predicted class)")
    axes[1].legend(loc="lower right", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def heatmap_grid(
    images: np.ndarray, maps: np.ndarray, captions: list[str], title: str, columns: int = 4
) -> plt.Figure:
    """Posters with their class activation maps over them (jet, alpha 0.5), as the study drew them."""
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 2.4, rows * 2.8), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    # The grid may have more cells than posters: the last row's spare cells stay empty.
    for axis, image, heat, caption in zip(axes.ravel(), images, maps, captions, strict=False):
        axis.imshow(image.astype(np.uint8))
        axis.imshow(
            heat,
            cmap="jet",
            alpha=0.5,
            extent=(-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5),
            vmin=0,
            vmax=1,
        )
        axis.set_title(caption, fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def activation_grid(activations: np.ndarray, title: str, per_row: int = 16) -> plt.Figure:
    """Every channel of one layer's activation, normalised as the study did, 16 per row."""
    height, width, channels = activations.shape
    rows = -(-channels // per_row)
    gap = 1  # A white line between channels (NaN, drawn white), so tiles do not run together.
    canvas = np.full((rows * (height + gap), per_row * (width + gap)), np.nan)
    for channel in range(channels):
        values = activations[:, :, channel].astype(np.float64)
        # The study's normalisation: minus mean, over std, times 64 plus 128, clipped.
        values = (values - values.mean()) / (values.std() + 1e-5) * 64 + 128
        top, left = (
            index * (size + gap)
            for index, size in zip(divmod(channel, per_row), (height, width), strict=True)
        )
        canvas[top : top + height, left : left + width] = np.clip(values, 0, 255)
    figure, axes = plt.subplots(
        figsize=(per_row * 0.9, max(1.0, rows * 0.9 * height / width) + 0.6)
    )
    axes.imshow(
        canvas,
        cmap=plt.get_cmap("viridis").with_extremes(bad="white"),
        vmin=0,
        vmax=255,
        aspect="auto",
    )
    axes.set_title(f"{title} ({channels} channels)")
    axes.axis("off")
    figure.tight_layout()
    return figure


def study_figures(study) -> dict[str, plt.Figure]:
    """Optuna's own matplotlib plots of a study: optimisation history, parameter
    importances and parallel coordinates (each left out where the study is too small)."""
    import warnings

    from optuna.visualization import matplotlib as optuna_plots

    figures = {}
    for name, plot in (
        ("optimization_history.png", optuna_plots.plot_optimization_history),
        ("param_importances.png", optuna_plots.plot_param_importances),
        ("parallel_coordinate.png", optuna_plots.plot_parallel_coordinate),
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental.
            try:
                axes = plot(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                continue  # Importances need two finished trials that differ, for one.
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure  # type: ignore[attr-defined]  # An array of axes.
        assert isinstance(figure, plt.Figure)
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        figures[name] = figure
    return figures
