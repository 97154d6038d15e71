"""The evaluate step: every variant of a train run (or one model) on the untouched test split."""

from __future__ import annotations

from poster_ml import plots
from poster_ml.config import EvaluateConfig
from poster_ml.errors import DatasetError
from poster_ml.tables import (
    faithfulness_table,
    finding_table,
    localisation_table,
    markdown_table,
    results_table,
)
from poster_ml.tracking import artifacts, loading, prepared_runs, runs


def evaluate_step(config: EvaluateConfig):
    """Evaluates every variant of a train run (or one model) and returns the results table."""
    from poster_ml.explain.evaluation import evaluate_model

    with runs.step_run(
        "evaluate", {"evaluate": config}, seed=config.seed, resumable=True, restart=config.restart
    ) as run:
        if config.model_uri:
            train = None
            targets = [loading.EvaluationTarget(config.model_uri, config.model_uri, None, {})]
        else:
            train = runs.find_train_run(config.train_run)
            targets = loading.evaluation_targets(train)
            runs.set_tags({"train_run_id": train.info.run_id})
        data = prepared_runs.open_data(
            config.data or (prepared_runs.used_data(train) if train else "data/prepared")
        )
        if train is not None and train.data.tags.get("dataset_digest") != data.digest:
            raise DatasetError(
                f"{data.path} holds dataset {data.digest[:12]}, but train run {train.info.run_id} trained on "
                f"{train.data.tags.get('dataset_digest', '(unknown)')[:12]}; pass --data with the prepared data it trained on"
            )
        artifacts.dataset_input(data, context="evaluation")
        test_dataset = artifacts.split_dataset(data, "test")
        rows, curves = [], {}
        predecessor = runs.predecessor(run)  # The interrupted run an `mlflow run` continues.
        for target in targets:
            # A resumed (or continued) evaluate run keeps what was finished before the interruption.
            done = artifacts.evaluated_row(run.info.run_id, target.name)
            if done is None and predecessor is not None:
                done = artifacts.evaluated_row(predecessor, target.name)
                if done is not None:
                    artifacts.log_evaluated_row(target.name, *done)
            if done is not None:
                print(f"{target.name} evaluated before the interruption: not again")
                row, curves[target.name] = done
                rows.append(row)
                continue
            print(f"evaluating {target.name}")
            model = loading.load_keras_model(target.model_uri)
            result = evaluate_model(
                model,
                data,
                config,
                with_activations=target.name == config.activations_variant or len(targets) == 1,
            )
            artifacts.log_model_evaluation(
                result, model.name, loading.model_id(target.model_uri), test_dataset
            )
            rows.append({"variant": target.name, **target.summary, **result.metrics})
            curves[target.name] = result.roc
            artifacts.log_evaluated_row(target.name, rows[-1], result.roc)
        table = results_table(rows)
        explanations = {
            "cam_localisation.md": localisation_table(rows),
            "faithfulness.md": faithfulness_table(rows),
            "finding.md": finding_table(rows),
        }
        roc_figure = plots.roc_curves(curves, "ROC curves on the test split")
        run_ids = [train.info.run_id] if train else []
        artifacts.log_results_table(
            table, explanations, roc_figure, [*run_ids, runs.active_run_id()]
        )
    print(markdown_table(table))
    for file_name, heading in EXPLANATION_HEADINGS.items():
        if len(explanations[file_name]):
            print(heading)
            print(markdown_table(explanations[file_name]))
    return table


EXPLANATION_HEADINGS = {
    "cam_localisation.md": "CAM localisation on the planted regions (ratio to the stronger baseline):",
    "faithfulness.md": "Faithfulness on the most confident test posters (deletion: lower is better; "
    "a difference below 0 beats the baseline):",
    "finding.md": "The study's finding: share of each map's mass on the title and on the people:",
}
