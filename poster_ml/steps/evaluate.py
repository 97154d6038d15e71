"""The evaluate step: every variant of a train run (or one model) on the untouched test split."""

from __future__ import annotations

import mlflow

from poster_ml import plots
from poster_ml.config import EvaluateConfig
from poster_ml.data.prepared import PreparedData
from poster_ml.errors import DatasetError
from poster_ml.tables import (
    faithfulness_table,
    finding_table,
    localisation_table,
    markdown_table,
    results_table,
)
from poster_ml.tracking import artifacts, loading, prepared_runs, runs, store


def evaluate_step(config: EvaluateConfig):
    """Evaluates every variant of a train run (or one model) and returns the results table."""
    with runs.step_run(
        "evaluate", {"evaluate": config}, seed=config.seed, resumable=True, restart=config.restart
    ) as step:
        train, targets = evaluation_targets(config)
        data = evaluation_data(config, train)
        artifacts.dataset_input(data, context="evaluation")
        rows, curves = [], {}
        for target in targets:
            record = evaluated(step, target, data, config, with_activations=len(targets) == 1)
            rows.append(record["row"])
            curves[target.name] = artifacts.evaluated_roc(record)
        table = results_table(rows)
        explanations = {
            "cam_localisation.md": localisation_table(rows),
            "faithfulness.md": faithfulness_table(rows),
            "finding.md": finding_table(rows),
        }
        roc_figure = plots.roc_curves(curves, "ROC curves on the test split")
        run_ids = [train.info.run_id] if train else []
        artifacts.log_results_table(table, explanations, roc_figure, [*run_ids, step.run_id])
    print(markdown_table(table))
    for file_name, heading in EXPLANATION_HEADINGS.items():
        if len(explanations[file_name]):
            print(heading)
            print(markdown_table(explanations[file_name]))
    return table


def evaluation_targets(config: EvaluateConfig):
    """The train run (None for one model by URI) and the models to evaluate."""
    if config.model_uri:
        return None, [loading.EvaluationTarget(config.model_uri, config.model_uri, None, {})]
    train = store.find_train_run(config.train_run)
    mlflow.set_tag("train_run_id", train.info.run_id)
    return train, loading.evaluation_targets(train)


def evaluation_data(config: EvaluateConfig, train) -> PreparedData:
    """The prepared data to evaluate on: the one the train run trained on, unless given."""
    data = prepared_runs.open_data(
        config.data or (prepared_runs.used_data(train) if train else "data/prepared")
    )
    if train is not None and train.data.tags.get("dataset_digest") != data.digest:
        raise DatasetError(
            f"{data.path} holds dataset {data.digest[:12]}, but train run {train.info.run_id} trained on "
            f"{train.data.tags.get('dataset_digest', '(unknown)')[:12]}; pass --data with the prepared data it trained on"
        )
    return data


def evaluated(step, target, data: PreparedData, config: EvaluateConfig, with_activations: bool):
    """One model's recorded results: kept from before an interruption, else evaluated now."""
    from poster_ml.evaluation.model import evaluate_model

    finished = step.continuation.finished(target.name)
    if finished is not None:
        print(f"{target.name} evaluated before the interruption: not again")
        if finished.run_id != step.run_id:
            step.continuation.record(target.name, finished.record)
        return finished.record
    print(f"evaluating {target.name}")
    model = loading.load_poster_model(target.model_uri)[0]
    result = evaluate_model(
        model,
        data,
        config,
        with_activations=with_activations or target.name == config.activations_variant,
    )
    test_dataset = artifacts.split_dataset(data, "test")
    artifacts.log_model_evaluation(
        result, model.name, loading.model_id(target.model_uri), test_dataset
    )
    record = artifacts.evaluated_record(
        {"variant": target.name, **target.summary, **result.metrics}, result.roc
    )
    step.continuation.record(target.name, record)
    return record


EXPLANATION_HEADINGS = {
    "cam_localisation.md": "CAM localisation on the planted regions (ratio to the stronger baseline):",
    "faithfulness.md": "Faithfulness on the most confident test posters (deletion: lower is better; "
    "a difference below 0 beats the baseline):",
    "finding.md": "The study's finding: share of each map's mass on the title and on the people:",
}
