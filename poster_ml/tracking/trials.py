"""Optuna trials as nested MLflow runs, opened by hand (not optuna-integration's
deprecated MLflowCallback, which loses the parent run in workers).

Each trial is a run `trial-<n>` under its variant's run, with the trial's parameters,
per-epoch metrics, final value and Optuna trial number. The trial keeps its run's id as
a user attribute, and the study keeps the variant run's, so either side finds the other.
A pruned trial ends KILLED with the tag `pruned=true`; a failed one FAILED with a
one-line reason.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import mlflow
import optuna
from mlflow.entities import RunStatus

from poster_ml.models.tuning import TRIAL_RUN_ATTRIBUTE, VARIANT_RUN_ATTRIBUTE, shared_attribute


@contextlib.contextmanager
def trial_run(trial: optuna.Trial, variant_run_id: str, parameters: dict) -> Iterator[mlflow.ActiveRun]:
    run = mlflow.start_run(run_name=f"trial-{trial.number}", nested=True, parent_run_id=variant_run_id)
    trial.set_user_attr(TRIAL_RUN_ATTRIBUTE, run.info.run_id)
    mlflow.set_tags({"poster_ml.step": "trial", "optuna_trial_number": str(trial.number), "optuna_study": trial.study.study_name})
    mlflow.log_params(parameters)
    try:
        yield run
    except optuna.TrialPruned:
        mlflow.set_tag("pruned", "true")
        mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
        raise
    except Exception as error:
        mlflow.set_tag("failure_reason", (str(error).splitlines() or [type(error).__name__])[0][:250])
        mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
        raise
    else:
        mlflow.end_run()


def log_trial_value(value: float) -> None:
    mlflow.log_metric("objective_val_auc", value)


def shared_variant_run(study: optuna.Study, created: bool) -> str | None:
    """The variant run that every worker on this study logs its trials under: none yet if
    this process created the study, else the one its creator made."""
    if created:
        return None
    run_id = shared_attribute(study, VARIANT_RUN_ATTRIBUTE)
    if run_id is None:
        return None
    try:
        mlflow.tracking.MlflowClient().get_run(run_id)
    except mlflow.exceptions.MlflowException:
        return None  # A study moved to a new tracking store: start a new variant run.
    return run_id


def log_study(study: optuna.Study) -> None:
    """On the variant's run: the best trial's parameters and value, and Optuna's plots."""
    from poster_ml import plots

    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not completed:
        return
    best = study.best_trial
    mlflow.log_params({f"best.{name}": value for name, value in best.params.items()} | {"optuna_study": study.study_name})
    mlflow.log_metrics({"best_trial_val_auc": best.value, "best_trial_number": best.number, "finished_trials": len(study.trials)})
    for name, figure in plots.study_figures(study).items():
        mlflow.log_figure(figure, f"tuning/{name}")
        plots.close(figure)
