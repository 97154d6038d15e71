"""The evaluate step's work on one model: test predictions, metrics, figures, explanations."""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pandas as pd
from sklearn import metrics as sklearn_metrics

from poster_ml import plots, predicted_fresh
from poster_ml.config import EvaluateConfig
from poster_ml.data.prepared import PreparedData
from poster_ml.data.synthetic import PLANTED_COLUMN, REGION_COLUMNS
from poster_ml.explain.activations import intermediate_activations
from poster_ml.explain.cam import float32_copy
from poster_ml.explain.grids import explain
from poster_ml.explain.localisation import location_priors
from poster_ml.explain.metrics import (
    classification_report_text,
    evaluate_probabilities,
    predictions_table,
)
from poster_ml.models.predict import predict_probabilities


@dataclasses.dataclass(frozen=True)
class ModelEvaluation:
    name: str
    metrics: dict[str, float]
    figures: dict  # Artifact file name -> Figure.
    texts: dict[str, str]  # Artifact file name -> text.
    predictions: pd.DataFrame
    roc: tuple[np.ndarray, np.ndarray, float]


def predict_test_split(model: keras.Model, data: PreparedData, chunk: int = 256) -> np.ndarray:
    """The model's probability of fresh for every test poster, read a chunk at a time."""
    reader = data.reader("test")
    rows = np.arange(len(reader))
    return np.concatenate(
        [
            predict_probabilities(model, reader.read(rows[start : start + chunk]))
            for start in range(0, len(rows), chunk)
        ]
        or [np.empty(0)]
    )


def evaluate_model(
    model: keras.Model, data: PreparedData, config: EvaluateConfig, with_activations: bool = False
) -> ModelEvaluation:
    split = data.split("test")
    labels = split["label"].to_numpy()
    if len(np.unique(labels)) < 2:
        raise ValueError("the test split needs posters of both classes to evaluate")
    probabilities = predict_test_split(model, data)
    majority = int(np.bincount(data.labels("train").astype(int), minlength=2).argmax())
    results = evaluate_probabilities(
        labels, probabilities, majority, config.bootstrap_samples, config.seed
    )

    false_positive, true_positive, _ = sklearn_metrics.roc_curve(labels, probabilities)
    figures = plots.test_split_figures(labels, probabilities, model.name)
    reader = data.reader("test")
    priors = (
        location_priors(data.split("train"))
        if {PLANTED_COLUMN, *REGION_COLUMNS} <= set(split.columns)
        else {}
    )
    explanation = explain(
        model,
        reader.read,
        split,
        probabilities,
        priors,
        config.cam_posters,
        config.bootstrap_samples,
        config.seed,
        config.faithfulness_posters,
    )
    figures.update(explanation.figures)
    results.update(explanation.metrics)
    if with_activations:
        figures.update(
            intermediate_activations(
                float32_copy(model), reader.read(np.array([0]))[0].astype(np.float32)
            )
        )
    report = classification_report_text(labels, probabilities)
    texts = {
        "classification_report.txt": report,
        "classification_report.json": json.dumps(
            sklearn_metrics.classification_report(
                labels,
                predicted_fresh(probabilities),
                labels=[0, 1],
                target_names=["rotten", "fresh"],
                output_dict=True,
                zero_division=0,
            ),
            indent=2,
        ),
    }
    return ModelEvaluation(
        model.name,
        results,
        figures,
        texts,
        predictions_table(split, probabilities),
        (false_positive, true_positive, results["roc_auc"]),
    )
