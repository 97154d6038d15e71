"""The evaluate step's work on one model: test predictions, metrics, figures, explanations."""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pandas as pd
from sklearn import metrics as sklearn_metrics

from poster_ml import plots
from poster_ml.config import EvaluateConfig
from poster_ml.data.prepared import PreparedData
from poster_ml.errors import DatasetError
from poster_ml.evaluation.design import annotated, attribute_rows, design_baseline
from poster_ml.evaluation.metrics import (
    classification_report,
    evaluate_probabilities,
    predictions_table,
)
from poster_ml.explain.activations import intermediate_activations
from poster_ml.explain.cam import float32_copy
from poster_ml.explain.explanation import ExplanationInputs, explain
from poster_ml.explain.localisation import (
    detected_priors,
    detected_title_agreement,
    location_priors,
    planted_regions,
)
from poster_ml.models.predict import predict_test_split


@dataclasses.dataclass(frozen=True)
class ModelEvaluation:
    name: str
    metrics: dict[str, float]
    figures: dict  # Artifact file name -> Figure.
    texts: dict[str, str]  # Artifact file name -> text.
    predictions: pd.DataFrame
    roc: tuple[np.ndarray, np.ndarray, float]


def evaluate_model(
    model: keras.Model, data: PreparedData, config: EvaluateConfig, with_activations: bool = False
) -> ModelEvaluation:
    split = data.split("test")
    labels = split["label"].to_numpy()
    if len(np.unique(labels)) < 2:
        raise DatasetError("the test split needs posters of both classes to evaluate")
    probabilities = predict_test_split(model, data)
    majority = int(np.bincount(data.labels("train").astype(int), minlength=2).argmax())
    results = evaluate_probabilities(
        labels, probabilities, majority, config.bootstrap_samples, config.seed
    )
    figures = plots.test_split_figures(labels, probabilities, model.name)
    # Explanations are computed in float32 whatever precision the model was trained in:
    # one copy serves every map and the activations.
    explained = float32_copy(model)
    explanation = explain(explanation_inputs(explained, data, probabilities, config))
    figures.update(explanation.figures)
    results.update(explanation.metrics)
    results.update(design_measures(data, probabilities, config))
    if with_activations:
        first = data.reader("test").read(np.array([0]))[0].astype(np.float32)
        figures.update(intermediate_activations(explained, first))
    false_positive, true_positive, _ = sklearn_metrics.roc_curve(labels, probabilities)
    return ModelEvaluation(
        model.name,
        results,
        figures,
        report_texts(labels, probabilities),
        predictions_table(split, probabilities),
        (false_positive, true_positive, results["roc_auc"]),
    )


def explanation_inputs(
    model: keras.Model, data: PreparedData, probabilities: np.ndarray, config: EvaluateConfig
) -> ExplanationInputs:
    split = data.split("test")
    return ExplanationInputs(
        model,
        data.reader("test").read,
        split,
        probabilities,
        location_priors(data.split("train"))
        if planted_regions(split)
        else detected_priors(data.split("train")),
        config.cam_posters,
        config.faithfulness_posters,
        config.bootstrap_samples,
        config.seed,
    )


def design_measures(
    data: PreparedData, probabilities: np.ndarray, config: EvaluateConfig
) -> dict[str, float]:
    """On annotated posters: each design attribute against the label, the attribute-only
    baseline beside this model, and (on synthetic posters) the detectors' agreement with
    the planted titles. Nothing where the posters were not annotated."""
    splits = {name: data.split(name) for name in ("train", "validation", "test")}
    if not all(annotated(split) for split in splits.values()):
        return {}
    baseline = design_baseline(splits, probabilities, config.bootstrap_samples, config.seed)
    metrics = baseline.metrics() | detected_title_agreement(data.manifest)
    for row in attribute_rows(splits["train"], splits["test"]).to_dict("records"):
        name = row.pop("attribute")
        metrics |= {f"design_{name}_{key}": float(value) for key, value in row.items()}
    return metrics


def report_texts(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, str]:
    return {
        "classification_report.txt": str(classification_report(labels, probabilities)),
        "classification_report.json": json.dumps(
            classification_report(labels, probabilities, as_dict=True), indent=2
        ),
    }
