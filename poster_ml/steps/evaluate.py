"""The evaluate step: every variant of a train run (or one model) on the untouched test split."""

from __future__ import annotations

import dataclasses
import logging

import mlflow
import numpy as np

from poster_ml import plots
from poster_ml.config import EvaluateConfig
from poster_ml.data.prepared import PreparedData
from poster_ml.evaluation.chance import verdict_of
from poster_ml.evaluation.metrics import ranked_by_validation_auc
from poster_ml.evaluation.report import GRIDS, ReportInputs, headline, report_html
from poster_ml.tables import (
    faithfulness_table,
    finding_table,
    localisation_table,
    markdown_table,
    results_table,
)
from poster_ml.tracking import datasets, logged_models, runs, schema, store

log = logging.getLogger(__name__)


def evaluate_step(config: EvaluateConfig):
    """Evaluates every variant of a train run (or one model), logs the report and the
    tables, and returns the results table."""
    with runs.step_run(
        "evaluate", {"evaluate": config}, seed=config.seed, resumable=True, restart=config.restart
    ) as step:
        train, targets = models_to_evaluate(config)
        data = evaluation_data(config, train)
        datasets.dataset_input(data, context="evaluation")
        records = ranked(
            [
                evaluated(step, target, data, config, with_activations=len(targets) == 1)
                for target in targets
            ]
        )
        rows = [record["row"] for record in records]
        table = results_table(rows)
        explanations = {
            "cam_localisation.md": localisation_table(rows),
            "faithfulness.md": faithfulness_table(rows),
            "finding.md": finding_table(rows),
        }
        roc_figure = plots.roc_curves(
            {legend_name(record["row"]): logged_models.evaluated_roc(record) for record in records},
            "ROC curves on the test split",
        )
        report = report_inputs(train, records, table, plots.png_bytes(roc_figure), explanations)
        report = dataclasses.replace(report, answers=questions_answered(records, data, config))
        run_ids = [train.info.run_id] if train else []
        logged_models.log_results_table(table, explanations, roc_figure, [*run_ids, step.run_id])
        mlflow.log_text(report_html(report), REPORT)
        report_link = store.ui_link(step.run.info.experiment_id, step.run_id, REPORT)
    log.debug(markdown_table(table))
    for file_name, heading in EXPLANATION_HEADINGS.items():
        if len(explanations[file_name]):
            log.debug(heading + "\n" + markdown_table(explanations[file_name]))
    log.info(headline(rows[0], len(rows)))
    log.info(f"the report, with the figures and what the maps show: {report_link}")
    return table


REPORT = "report.html"


def questions_answered(records: list[dict], data: PreparedData, config: EvaluateConfig) -> list:
    """The study's questions that this train run's variants answer, on the test posters."""
    from poster_ml.evaluation.comparison import study_answers

    answers = {
        record["row"]["variant"]: np.array(record["answers"])
        for record in records
        if "answers" in record  # An evaluation recorded before answers were kept has none.
    }
    return study_answers(data.labels("test"), answers, config.bootstrap_samples, config.seed)


def legend_name(row: dict) -> str:
    """The variant's name in the ROC legend, marked where it does not beat chance."""
    mark = verdict_of(row).label()
    return f"{row['variant']} ({mark})" if mark else row["variant"]


def ranked(records: list[dict]) -> list[dict]:
    """The records best on validation first: the order that selects, of the results table
    and of the report."""
    return ranked_by_validation_auc(records, lambda record: record["row"].get("val_auc"))


def report_inputs(train, records, table, roc_png: bytes, explanations) -> ReportInputs:
    """The report's contents; the best variant's grids come from the run that evaluated it
    (an earlier one, where an interrupted evaluation was continued)."""
    best = records[0]
    folder = best.get("folder", f"evaluation/{best['row']['variant']}")
    run_id = best.get("run_id") or mlflow.active_run().info.run_id  # type: ignore[union-attr]  # Inside the evaluate run.
    grids = {name: store.load_run_bytes(run_id, f"{folder}/{name}") for name in GRIDS}
    subject = f"train run {train.info.run_id}" if train else best["row"]["variant"]
    details = [
        "results.md, results.html: the results table",
        "roc_all_variants.png: every variant's ROC curve",
        *(
            f"{name}: {EXPLANATION_HEADINGS[name].rstrip(':')}"
            for name, table in explanations.items()
            if len(table)
        ),
        *(
            f"{record.get('folder', 'evaluation/' + record['row']['variant'])}/: ROC, precision-recall, "
            "calibration, confusion matrix, CAM grids, faithfulness curves, predictions.csv"
            for record in records
        ),
    ]
    return ReportInputs(
        f"poster-ml evaluation of {subject}",
        [record["row"] for record in records],
        table,
        roc_png,
        {name: png for name, png in grids.items() if png is not None},
        details,
    )


def models_to_evaluate(config: EvaluateConfig):
    """The train run (None for one model by URI) and the models to evaluate."""
    if config.model_uri:
        return None, [logged_models.EvaluationTarget(config.model_uri, config.model_uri, None, {})]
    train = schema.find_train_run(config.train_run)
    mlflow.set_tag("train_run_id", train.info.run_id)
    return train, logged_models.evaluation_targets(train)


def evaluation_data(config: EvaluateConfig, train) -> PreparedData:
    """The prepared data to evaluate on: the one the train run trained on, unless given."""
    if train is None:
        return datasets.open_data(config.data or "data/prepared")
    return datasets.data_trained_on(
        train, config.data or datasets.used_data(train), f"train run {train.info.run_id}"
    )


def evaluated(step, target, data: PreparedData, config: EvaluateConfig, with_activations: bool):
    """One model's recorded results: kept from before an interruption, else evaluated now."""
    from poster_ml.evaluation.model import evaluate_model

    finished = step.continuation.finished(target.name)
    if finished is not None:
        log.info(f"{target.name} evaluated before the interruption: not again")
        if finished.run_id != step.run_id:
            step.continuation.record(target.name, finished.record)
        return finished.record
    log.debug(f"evaluating {target.name}")  # Its result line says the rest.
    model = logged_models.load_poster_model(target.model_uri)[0]
    result = evaluate_model(
        model,
        data,
        config,
        with_activations=with_activations or target.name == config.activations_variant,
    )
    test_dataset = datasets.split_dataset(data, "test")
    folder = logged_models.log_model_evaluation(
        result, model.name, logged_models.model_id(target.model_uri), test_dataset
    )
    row = {"variant": target.name, **target.summary, **result.metrics}
    verdict = verdict_of(row)
    row["verdict"] = verdict.column()
    answers = result.predictions["probability_fresh"].to_numpy()
    record = logged_models.evaluated_record(row, result.roc, answers) | {
        "run_id": step.run_id,
        "folder": folder,
    }
    step.continuation.record(target.name, record)
    log.info(
        f"{target.name}: test AUC {row['roc_auc']:.3f} "
        f"({row['roc_auc_ci_low']:.3f}-{row['roc_auc_ci_high']:.3f})"
        + (f", validation AUC {row['val_auc']:.3f}" if row.get("val_auc") is not None else "")
        + (f"; {verdict.words()}" if not verdict.beats_chance else "")
    )
    return record


EXPLANATION_HEADINGS = {
    "cam_localisation.md": "CAM localisation on the planted regions (ratio to the stronger baseline):",
    "faithfulness.md": "Faithfulness on the most confident test posters (deletion: lower is better; "
    "a difference below 0 beats the baseline):",
    "finding.md": "The study's finding: share of each map's mass on the title and on the people:",
}
