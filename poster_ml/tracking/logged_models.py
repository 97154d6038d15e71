"""Logged models: a variant's model logged on the run that trained it (a variant run, or
the best trial's run) and linked to each variant run whose model it is, with its
leaderboard row and, once evaluated, its test metrics, figures and the study's tables; and
finding and loading them again, to evaluate, serve or compare.

A variant run's model is the one its `model_uri` tag names. A tuned variant's model is
its study's best trial's own model, logged on that trial's run, never a retraining: the
variant run of every train run that uses the study links it, with its metrics, curves
and leaderboard row.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from poster_ml import plots
from poster_ml.data.images import InputContract, encode_jpeg
from poster_ml.data.prepared import PreparedData
from poster_ml.errors import DatasetError, ModelLoadError, TrackingStoreError, first_line
from poster_ml.evaluation.chance import verdict_of
from poster_ml.serving.model import log_poster_model
from poster_ml.tables import markdown_table
from poster_ml.tracking import schema
from poster_ml.tracking.datasets import split_dataset, with_dataset_race_retried
from poster_ml.tracking.store import load_run_dict, log_figure

if TYPE_CHECKING:
    from poster_ml.models.fit import TrainedVariant

FACTS_FILE, ROW_FILE, SEEN_FILE = (
    "trained_variant.json",
    "leaderboard_row.json",
    "seen_posters.json",
)


def trained_facts(trained: TrainedVariant) -> dict[str, Any]:
    """What the variant run needs of a training besides the model: JSON values."""
    return {
        "variant": trained.variant.name,
        "seconds": trained.seconds,
        "pretrained": trained.pretrained,
        "hyperparameters": trained.hyperparameters,
        "history": trained.history.to_dict(orient="list"),
        "summary": model_summary(trained.model),
        "diverged": trained.diverged,
        "validation": trained.validation,
    }


def log_model(trained: TrainedVariant, data: PreparedData, configs: dict[str, Any]) -> str:
    """Logs the trained model on the active run (and the facts to link it later); returns its URI."""
    example = encode_jpeg(data.reader("validation").read(np.array([0]))[0])
    params = {
        "variant": trained.variant.name,
        "pretrained": trained.pretrained,
        **trained.hyperparameters,
    }
    configs = {name: dataclasses.asdict(config) for name, config in configs.items()}
    contract = InputContract.of_dataset(data.info)
    info = log_poster_model(
        trained.model, contract, configs, example, name=trained.variant.name, params=params
    )
    mlflow.log_dict(trained_facts(trained), FACTS_FILE)
    return info.model_uri


def log_trained_variant(
    trained: TrainedVariant, data: PreparedData, configs: dict[str, Any]
) -> dict[str, Any]:
    """Logs a model trained in the variant run itself, and links it; returns its leaderboard row."""
    return link_variant_model(trained_facts(trained), log_model(trained, data, configs), data)


def link_variant_model(facts: dict[str, Any], model_uri: str, data: PreparedData) -> dict[str, Any]:
    """Makes `model_uri` the active variant run's model: summary metrics linked to the model
    and the validation split, curves, history, the posters it saw, and its leaderboard row."""
    history = pd.DataFrame(facts["history"])
    name = facts["variant"]
    row = leaderboard_row(facts, history)
    if row["diverged"]:
        mlflow.set_tag("diverged", row["diverged"])
    mlflow.log_metrics(
        {"best_train_accuracy": row["train_accuracy"], "train_seconds": facts["seconds"]}
    )
    mlflow.set_tags(
        {
            "pretrained": str(facts["pretrained"]).lower(),
            "replicas": str(facts["hyperparameters"].get("replicas", 1)),
        }
    )
    log_figure(plots.training_curves(history, name), f"curves_{name}.png")
    mlflow.log_text(facts["summary"], "model_summary.txt")
    mlflow.log_table(history, "history.json")
    seen = data.manifest[data.manifest["split"].isin(["train", "validation"])]["sha256"]
    mlflow.log_dict({"dataset_digest": data.digest, "sha256": sorted(seen)}, SEEN_FILE)
    # Logged once per variant run, to the run and to the model, linked to the validation split.
    model_id = model_uri.removeprefix("models:/")
    validation_split = split_dataset(data, "validation")
    with_dataset_race_retried(
        lambda: mlflow.log_metrics(
            {f"best_{key}": float(row[key]) for key in ("val_accuracy", "val_auc")},
            model_id=model_id,
            dataset=validation_split,
        )
    )
    row["model_uri"] = model_uri
    mlflow.set_tag("model_uri", model_uri)
    mlflow.log_dict(row, ROW_FILE)
    return row


def leaderboard_row(facts: dict[str, Any], history: pd.DataFrame) -> dict[str, Any]:
    """The variant's row of the leaderboard: its kept epoch's figures, validation's exact."""
    kept = history.loc[history["restored"].astype(bool)].iloc[0]
    validation = validation_of(facts, kept)
    return {
        "variant": facts["variant"],
        "train_accuracy": float(kept["accuracy"]),
        "val_accuracy": validation["accuracy"],
        "val_auc": validation["roc_auc"],
        "val_auc_95ci": f"{validation['roc_auc_ci_low']:.3f}-{validation['roc_auc_ci_high']:.3f}",
        "verdict": leaderboard_verdict(validation),
        "epochs": len(history),
        "kept_epoch": int(kept["epoch"]),
        "seconds": round(facts["seconds"], 1),
        "images_per_second": round(float(history["images_per_second"].median()), 1),
        "pretrained": facts["pretrained"],
        "diverged": facts.get("diverged", ""),
    }


def validation_of(facts: dict[str, Any], kept: pd.Series) -> dict[str, float]:
    """The kept weights' exact validation figures. Facts logged before they were recorded
    (an older run that a continuing one links) have only Keras's approximate AUC at the
    kept epoch, with no interval: the verdict then cannot say it beats chance."""
    if facts.get("validation"):
        return facts["validation"]
    nan = float("nan")
    return {
        "measured": False,
        "roc_auc": float(kept["val_auc"]),
        "accuracy": float(kept["val_accuracy"]),
        **{f"{name}_ci_{end}": nan for name in ("roc_auc", "accuracy") for end in ("low", "high")},
        "majority_baseline": nan,
        "spread": nan,
    }


def leaderboard_verdict(validation: dict[str, Any]) -> str:
    """Whether the kept weights beat chance on validation, as the leaderboard says it."""
    if validation.get("measured", True) is False:
        return "not measured"
    return verdict_of(validation).column()


def trial_facts(run_id: str) -> dict[str, Any]:
    """The facts a run logged with its model (a variant run or a tuning trial's)."""
    facts = load_run_dict(run_id, FACTS_FILE)
    if facts is None:
        raise TrackingStoreError(f"run {run_id} logged no model facts ({FACTS_FILE})")
    return facts


def seen_posters(run_id: str) -> set[str] | None:
    """Content hashes of the posters a variant run's model trained or was selected on."""
    seen = load_run_dict(run_id, SEEN_FILE)
    return None if seen is None else set(seen["sha256"])


def model_summary(model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    return "\n".join(lines)


def download_model(model_uri: str, folder: str) -> str:
    """The logged model's files in a local folder, for a server to load."""
    try:
        return mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder)
    except (MlflowException, OSError) as error:
        raise ModelLoadError(f"cannot load model {model_uri}: {first_line(error)}") from error


def load_poster_model(model_uri: str):
    """The Keras model inside a logged poster pyfunc, and its settings (image size, threshold)."""
    try:
        wrapper = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    except (MlflowException, OSError) as error:
        raise ModelLoadError(f"cannot load model {model_uri}: {first_line(error)}") from error
    return wrapper.model, wrapper.settings


def model_id(model_uri: str) -> str | None:
    """The logged model's id behind any model URI (models:/m-..., models:/name@alias, runs:/...)."""
    try:
        return mlflow.models.get_model_info(model_uri).model_id
    except (MlflowException, OSError):
        return None


@dataclasses.dataclass(frozen=True)
class EvaluationTarget:
    """One model to evaluate, and the variant run (if any) its results belong to."""

    name: str
    model_uri: str
    run_id: str | None
    summary: dict[str, Any]


def variant_runs(train: mlflow.entities.Run) -> list[mlflow.entities.Run]:
    """The variant runs under a train run that have a model, in training order; one line
    of error when there are none."""
    children = schema.child_runs(train)
    with_model = [child for child in children if "model_uri" in child.data.tags]
    if not with_model:
        raise DatasetError(
            f"train run {train.info.run_id} has no variant with a model (it trained nothing, or every variant failed); "
            "train again, or pass --train-run with a run that has one"
        )
    return with_model


def evaluation_targets(train: mlflow.entities.Run) -> list[EvaluationTarget]:
    """The variants of a train run that have a model, in training order, to evaluate."""
    children = variant_runs(train)
    return [
        EvaluationTarget(
            child.data.tags["variant"],
            child.data.tags["model_uri"],
            child.info.run_id,
            {
                "train_accuracy": child.data.metrics.get("best_train_accuracy"),
                "val_accuracy": child.data.metrics.get("best_val_accuracy"),
                "val_auc": child.data.metrics.get("best_val_auc"),
                "pretrained": child.data.tags.get("pretrained"),
                "epochs": trained_epochs(child.info.run_id),
                "seconds": child.data.metrics.get("train_seconds"),
            },
        )
        for child in children
    ]


def trained_epochs(run_id: str) -> int:
    """Epochs the variant's model trained, from its leaderboard row (a tuned variant's
    epochs are its best trial's, not the variant run's own history)."""
    row = load_run_dict(run_id, ROW_FILE)
    if row is None:
        raise DatasetError(f"variant run {run_id} has a model but no {ROW_FILE}")
    return int(row["epochs"])


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
