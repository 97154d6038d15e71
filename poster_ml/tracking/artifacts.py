"""What the steps log: datasets, figures, per-epoch metrics, trained variants, evaluations, tables."""

from __future__ import annotations

import dataclasses
from typing import Any

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from poster_ml import plots
from poster_ml.data.prepared import PreparedData, sample_posters
from poster_ml.tables import markdown_table
from poster_ml.tracking.datasets import (
    dataset_input,
    log_prepared,
    prepared_uri,
    with_dataset_race_retried,
)


def log_figure(figure, path: str, run_id: str | None = None) -> None:
    """Logs a figure to a run (the active one by default) and frees it."""
    if run_id is None:
        mlflow.log_figure(figure, path)
    else:
        MlflowClient().log_figure(run_id, figure, path)
    plt.close(figure)


def log_preprocess(dataset: PreparedData, log_data: bool) -> PreparedData:
    """Logs what preprocess made, named by its run (runs:/<id>/prepared) wherever it is
    used; with `log_data` the whole dataset too, for other machines."""
    info = dataset.info
    # The preprocess run is the dataset's source for every later run, logged or not: MLflow
    # keeps one dataset per name and digest, and its first source is the one it shows.
    uri = log_prepared(dataset) if log_data else prepared_uri(mlflow.active_run().info.run_id)  # type: ignore[union-attr]  # Inside the preprocess run.
    dataset = dataclasses.replace(dataset, uri=uri)
    dataset_input(dataset, context="preprocess")
    mlflow.log_metrics(
        {"inputs": info["inputs"], "accepted": info["accepted"], "rejected": info["rejected"]}
    )
    for name in ("manifest.csv", "rejects.csv", "dataset.json"):
        mlflow.log_artifact(str(dataset.path / name))
    log_figure(plots.class_balance_chart(info["counts"]), "class_balance.png")
    log_figure(plots.sample_grid(sample_posters(dataset)), "sample_posters.png")
    return dataset


def epoch_logger(skip_through: int = -1):
    """A Keras callback that logs each epoch's metrics: loss, accuracy, AUC, their val_
    twins, learning rate, epoch seconds and images per second. Epochs up to
    `skip_through` are already in a resumed run and are not logged twice.

    The metrics are queued (MLflow's asynchronous logging) and sent, in order, by a thread
    of their own: a tracking server away for a while does not stop the training, which
    waits for the queue only when it ends. MLflow's HTTP retries (MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR) set how long a server may stay away."""
    import keras

    def log(epoch, logs):
        if epoch > skip_through:
            mlflow.log_metrics(
                {name: float(value) for name, value in (logs or {}).items()},
                step=epoch,
                synchronous=False,
            )

    def delivered(logs) -> None:
        mlflow.flush_async_logging()

    return keras.callbacks.LambdaCallback(on_epoch_end=log, on_train_end=delivered)


def evaluated_record(row: dict[str, Any], roc: tuple, answers: np.ndarray) -> dict[str, Any]:
    """One model's results row, ROC curve and test answers (in the split's order, for the
    paired comparisons), as the evaluate run records it finished."""
    false_positive, true_positive, auc = roc
    return {
        "row": row,
        "roc": [list(map(float, false_positive)), list(map(float, true_positive)), float(auc)],
        "answers": [float(value) for value in answers],
    }


def evaluated_roc(record: dict[str, Any]) -> tuple:
    false_positive, true_positive, auc = record["roc"]
    return np.array(false_positive), np.array(true_positive), auc


def log_leaderboard(board: pd.DataFrame) -> None:
    mlflow.log_table(board, "leaderboard.json")
    mlflow.log_text(markdown_table(board.drop(columns="model_uri")), "leaderboard.md")
    best = board.iloc[0]
    mlflow.set_tags({"best_variant": best["variant"], "best_model_uri": best["model_uri"]})
    mlflow.log_metric("best_val_auc", float(best["val_auc"]))


def log_model_evaluation(result, name: str, model_id: str | None, test_dataset) -> str:
    """Logs one model's evaluation from the evaluate run: its test metrics linked to the
    logged model and the test dataset, its figures, reports and predictions under
    evaluation/<name>/ (the training runs are left as they were); returns that folder."""
    metrics = {f"test_{metric}": float(value) for metric, value in result.metrics.items()}
    with_dataset_race_retried(
        lambda: mlflow.log_metrics(metrics, model_id=model_id, dataset=test_dataset)
    )
    folder = f"evaluation/{name.replace('/', '_').replace(':', '_')}"
    for file_name, figure in result.figures.items():
        log_figure(figure, f"{folder}/{file_name}")
    for file_name, text in result.texts.items():
        mlflow.log_text(text, f"{folder}/{file_name}")
    mlflow.log_text(result.predictions.to_csv(index=False), f"{folder}/predictions.csv")
    return folder


def log_results_table(
    table: pd.DataFrame, explanations: dict[str, pd.DataFrame], roc_figure, run_ids: list[str]
) -> None:
    """The study's results table (Markdown and HTML), the explanation tables (by file
    name: localisation, faithfulness, the finding) and every variant's ROC curve, on each run."""
    client = MlflowClient()
    for run_id in run_ids:
        client.log_text(run_id, markdown_table(table), "results.md")
        for file_name, explanation in explanations.items():
            if len(explanation):
                client.log_text(run_id, markdown_table(explanation), file_name)
        client.log_text(
            run_id,
            table.to_html(index=False, float_format=lambda value: f"{value:.3f}", na_rep="-"),
            "results.html",
        )
        client.log_figure(run_id, roc_figure, "roc_all_variants.png")
    plt.close(roc_figure)


def log_files(paths: list) -> None:
    for path in paths:
        mlflow.log_artifact(str(path))
