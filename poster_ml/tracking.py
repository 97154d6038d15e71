"""Everything that talks to the MLflow tracking store for the pipeline's steps."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import time
import warnings
from typing import TYPE_CHECKING, Any, Iterator

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

import poster_ml
from poster_ml import CLASS_NAMES, plots
from poster_ml.config import flatten
from poster_ml.dataset import PreparedData
from poster_ml.errors import DatasetError
from poster_ml.images import encode_jpeg
from poster_ml.report import markdown_table
from poster_ml.serving import log_poster_model

if TYPE_CHECKING:
    from poster_ml.training import TrainedVariant

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "poster-ml"


def configure_tracking() -> str:
    """Uses MLFLOW_TRACKING_URI when set, else a SQLite store mlflow.db in the working directory."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    mlflow.set_tracking_uri(uri)
    # Under `mlflow run` the run and its experiment already exist; elsewhere pick ours.
    # (MLFLOW_EXPERIMENT_ID is no sign of that: mlflow.set_experiment itself sets it.)
    if "MLFLOW_RUN_ID" not in os.environ:
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT)
    return uri


def config_params(configs: dict[str, Any]) -> dict[str, Any]:
    """Flat run parameters named '<concern>.<setting>', e.g. 'preprocess.seed'.

    The prefix keeps them apart from the raw strings `mlflow run` logs for MLproject
    parameters, which MLflow would refuse to overwrite with the typed values.
    """
    return {f"{concern}.{name}": value for concern, config in configs.items() for name, value in flatten(config).items()}


@contextlib.contextmanager
def step_run(step: str, configs: dict[str, Any], seed: int) -> Iterator[mlflow.ActiveRun]:
    """Starts (or, under `mlflow run`, resumes) the run of one step, logging its whole config."""
    configure_tracking()
    with mlflow.start_run() as run:
        mlflow.set_tags({"poster_ml.step": step, "poster_ml.version": poster_ml.__version__, "seed": str(seed), "python": platform.python_version()})
        mlflow.log_params(config_params(configs))
        mlflow.log_dict({concern: dataclasses.asdict(config) for concern, config in configs.items()}, "config.json")
        yield run


def active_run_id() -> str:
    return mlflow.active_run().info.run_id


def set_tags(tags: dict[str, str]) -> None:
    mlflow.set_tags(tags)


@contextlib.contextmanager
def variant_run(name: str, parent: mlflow.ActiveRun, tags: dict[str, str]) -> Iterator[mlflow.ActiveRun]:
    """A nested run for one variant under the train step's run."""
    with mlflow.start_run(run_name=name, nested=True, parent_run_id=parent.info.run_id) as run:
        mlflow.set_tags(tags | {"variant": name, "poster_ml.step": "train_variant"})
        yield run


def dataset_input(data: PreparedData, context: str) -> None:
    """Logs the prepared dataset as the run's MLflow dataset input, carrying our full digest."""
    manifest, digest = data.manifest, data.info["digest"]
    with warnings.catch_warnings():
        # MLflow warns that a local path could be one of two equivalent source kinds, and
        # that integer columns cannot hold missing values; neither applies to a manifest.
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(
            manifest,
            source=str(data.path.resolve()),
            targets="label",
            name=f"posters-{digest[:12]}",
            # The store keeps at most 36 characters of a digest; the full one travels as a tag.
            digest=digest[:32],
        )
        mlflow.log_input(dataset, context=context, tags={"sha256": digest})
    mlflow.set_tags({"dataset_digest": digest, "data_path": str(data.path.resolve())})


def log_figure(figure, path: str, run_id: str | None = None) -> None:
    """Logs a figure to a run (the active one by default) and frees it."""
    if run_id is None:
        mlflow.log_figure(figure, path)
    else:
        MlflowClient().log_figure(run_id, figure, path)
    plots.close(figure)


def log_preprocess(dataset: PreparedData) -> None:
    info = dataset.info
    dataset_input(dataset, context="preprocess")
    mlflow.log_metrics({"inputs": info["inputs"], "accepted": info["accepted"], "rejected": info["rejected"]})
    for name in ("manifest.csv", "rejects.csv", "dataset.json"):
        mlflow.log_artifact(str(dataset.path / name))
    log_figure(plots.class_balance_chart(info["counts"]), "class_balance.png")
    log_figure(plots.sample_grid(sample_posters(dataset)), "sample_posters.png")


def sample_posters(dataset: PreparedData, per_class: int = 8) -> dict[str, np.ndarray]:
    """The first training posters of each class, read from the shard."""
    train, reader = dataset.split("train"), dataset.reader("train")
    return {name: reader.read(train[train["class"] == name]["row"].to_numpy()[:per_class]) for name in reversed(CLASS_NAMES)}


def epoch_logger():
    """A Keras callback that logs each epoch's metrics: loss, accuracy, AUC, their val_
    twins, learning rate, epoch seconds and images per second."""
    import keras

    return keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: mlflow.log_metrics({name: float(value) for name, value in (logs or {}).items()}, step=epoch)
    )


def log_trained_variant(trained: TrainedVariant, data: PreparedData, configs: dict[str, Any]) -> dict[str, Any]:
    """Logs one variant's summary metrics, curves, model summary and model; returns its leaderboard row."""
    best = trained.best_epoch
    row = {
        "variant": trained.variant.name,
        "train_accuracy": float(best["accuracy"]),
        "val_accuracy": float(best["val_accuracy"]),
        "val_auc": float(best["val_auc"]),
        "epochs": len(trained.history),
        "best_epoch": int(best["epoch"]),
        "seconds": round(trained.seconds, 1),
        "images_per_second": round(float(trained.history["images_per_second"].median()), 1),
        "pretrained": trained.pretrained,
    }
    mlflow.log_metrics({f"best_{name}": float(row[name]) for name in ("train_accuracy", "val_accuracy", "val_auc")} | {"train_seconds": trained.seconds})
    mlflow.set_tag("pretrained", str(trained.pretrained).lower())
    log_figure(plots.training_curves(trained.history, trained.variant.name), f"curves_{trained.variant.name}.png")
    mlflow.log_text(model_summary(trained.model), "model_summary.txt")
    mlflow.log_table(trained.history, "history.json")
    example = encode_jpeg(data.reader("validation").read(np.array([0]))[0])
    info = log_poster_model(trained.model, data.image_size, {name: dataclasses.asdict(c) for name, c in configs.items()}, example)
    row["model_uri"] = info.model_uri
    mlflow.set_tag("model_uri", info.model_uri)
    return row


def model_summary(model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    return "\n".join(lines)


def log_leaderboard(board: pd.DataFrame) -> None:
    mlflow.log_table(board, "leaderboard.json")
    mlflow.log_text(markdown_table(board.drop(columns="model_uri")), "leaderboard.md")
    best = board.iloc[0]
    mlflow.set_tags({"best_variant": best["variant"], "best_model_uri": best["model_uri"]})
    mlflow.log_metric("best_val_auc", float(best["val_auc"]))


@dataclasses.dataclass(frozen=True)
class EvaluationTarget:
    """One model to evaluate, and the variant run (if any) its results belong to."""

    name: str
    model_uri: str
    run_id: str | None
    summary: dict[str, Any]


def all_experiment_ids(client: MlflowClient) -> list[str]:
    return [experiment.experiment_id for experiment in client.search_experiments()]


def find_train_run(train_run: str) -> mlflow.entities.Run:
    """The train step's parent run by id, or the latest finished one for 'latest'."""
    client = MlflowClient()
    if train_run != "latest":
        try:
            return client.get_run(train_run)
        except MlflowException:
            raise DatasetError(f"no such train run: {train_run}") from None
    runs = client.search_runs(all_experiment_ids(client), "tags.`poster_ml.step` = 'train' and attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise DatasetError("no finished train run in the tracking store; run `poster-ml train` first or pass --model-uri")
    return runs[0]


def evaluation_targets(train: mlflow.entities.Run) -> list[EvaluationTarget]:
    """The variant runs under a train run, in training order."""
    client = MlflowClient()
    children = client.search_runs([train.info.experiment_id], f"tags.`mlflow.parentRunId` = '{train.info.run_id}'", order_by=["attributes.start_time ASC"])
    return [
        EvaluationTarget(
            child.data.tags["variant"],
            child.data.tags["model_uri"],
            child.info.run_id,
            {"train_accuracy": child.data.metrics.get("best_train_accuracy"), "val_accuracy": child.data.metrics.get("best_val_accuracy"),
             "epochs": len(client.get_metric_history(child.info.run_id, "loss")), "seconds": child.data.metrics.get("train_seconds")},
        )
        for child in children
        if "model_uri" in child.data.tags
    ]


def load_keras_model(model_uri: str):
    """The Keras model inside a logged poster pyfunc."""
    try:
        return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().model
    except (MlflowException, OSError) as error:
        raise DatasetError(f"cannot load model {model_uri}: {str(error).splitlines()[0]}") from None


def log_model_evaluation(result, run_id: str | None) -> None:
    """Logs an evaluation to the variant's run (or to the active run) under evaluation/."""
    client = MlflowClient()
    run_id = run_id or mlflow.active_run().info.run_id
    timestamp = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(f"test_{name}", float(value), timestamp, 0) for name, value in result.metrics.items()])
    for name, figure in result.figures.items():
        log_figure(figure, f"evaluation/{name}", run_id)
    for name, text in result.texts.items():
        client.log_text(run_id, text, f"evaluation/{name}")
    client.log_text(run_id, result.predictions.to_csv(index=False), "evaluation/predictions.csv")


def log_results_table(table: pd.DataFrame, roc_figure, run_ids: list[str]) -> None:
    """The study's results table (Markdown and HTML) and every variant's ROC curve, on each run."""
    client = MlflowClient()
    for run_id in run_ids:
        client.log_text(run_id, markdown_table(table), "results.md")
        client.log_text(run_id, table.to_html(index=False, float_format=lambda value: f"{value:.3f}", na_rep="-"), "results.html")
        client.log_figure(run_id, roc_figure, "roc_all_variants.png")
    plots.close(roc_figure)
