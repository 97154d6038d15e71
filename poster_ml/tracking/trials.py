"""Optuna trials as nested MLflow runs, opened by hand (not optuna-integration's
deprecated MLflowCallback, which loses the parent run in workers).

Each trial is a run `trial-<n>` under the variant run of the train run that ran it, with
the trial's parameters, per-epoch metrics, final value, Optuna trial number and the
host and process running it. The trial keeps its run's id, host and process id as user
attributes, so a later start can find its run and tell whether its process died. A
pruned trial ends KILLED with the tag `pruned=true`; a failed one FAILED with a one-line
reason, on the run and on the trial.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import matplotlib.pyplot as plt
import mlflow
import optuna
from mlflow.entities import RunStatus

from poster_ml.errors import first_line
from poster_ml.models.studies import VARIANT_ATTRIBUTE
from poster_ml.models.tuning import (
    DIVERGED_ATTRIBUTE,
    FAILURE_ATTRIBUTE,
    HOST_ATTRIBUTE,
    PID_ATTRIBUTE,
    TRIAL_RUN_ATTRIBUTE,
)
from poster_ml.processes import HOST
from poster_ml.tracking import schema
from poster_ml.tracking.resume import owner_tags

log = logging.getLogger(__name__)


@contextlib.contextmanager
def trial_run(
    trial: optuna.Trial, variant_run_id: str, parameters: dict
) -> Iterator[mlflow.ActiveRun]:
    # Who runs the trial comes first, host before process id: a worker killed at any later
    # point leaves a trial that a start on this host can judge (tuning.fail_dead_trials).
    trial.set_user_attr(HOST_ATTRIBUTE, HOST)
    trial.set_user_attr(PID_ATTRIBUTE, os.getpid())
    run = mlflow.start_run(
        run_name=f"trial-{trial.number}", nested=True, parent_run_id=variant_run_id
    )
    trial.set_user_attr(TRIAL_RUN_ATTRIBUTE, run.info.run_id)
    mlflow.set_tags(
        {
            schema.STEP_TAG: "trial",
            "optuna_trial_number": str(trial.number),
            "optuna_study": trial.study.study_name,
        }
        | owner_tags()
    )
    mlflow.log_params(parameters)
    try:
        yield run
    except optuna.TrialPruned as pruned:
        reason = str(pruned) if str(pruned).startswith("diverged") else ""
        log.info(
            f"{trial_label(trial)}: pruned, "
            + (reason or "its validation AUC behind the finished trials'")
        )
        mlflow.set_tag("pruned", "true")
        mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
        raise
    except Exception as error:  # Any failure of one trial is recorded; study.optimize goes on.
        reason = first_line(error, 250)
        log.warning(f"{trial_label(trial)} failed: {reason}")
        mlflow.set_tag("failure_reason", reason)
        trial.set_user_attr(FAILURE_ATTRIBUTE, f"{type(error).__name__}: {reason}")
        mlflow.end_run(RunStatus.to_string(RunStatus.FAILED))
        raise
    else:
        mlflow.end_run()


def prune_if_diverged(trial: optuna.Trial, reason: str) -> None:
    """A diverged training's trial is pruned, counted as Optuna counts a pruned trial; its
    run (tag `diverged`) and the trial (user attribute) say why."""
    if reason:
        mlflow.set_tag("diverged", reason)
        trial.set_user_attr(DIVERGED_ATTRIBUTE, reason)
        raise optuna.TrialPruned(f"diverged: {reason}")


def trial_label(trial: optuna.Trial) -> str:
    """'basic_cnn trial 2', as the trial's progress line names it."""
    variant = trial.study.user_attrs.get(VARIANT_ATTRIBUTE, trial.study.study_name)
    return f"{variant} trial {trial.number}"


def log_study(study: optuna.Study, best: optuna.trial.FrozenTrial) -> None:
    """On the variant's run: the study, its best trial's parameters and value, and Optuna's plots."""
    from poster_ml import plots

    mlflow.log_params(
        {f"best.{name}": value for name, value in best.params.items()}
        | {"optuna_study": study.study_name}
    )
    mlflow.log_metrics(
        {
            "best_trial_val_auc": float(best.value or 0.0),  # A best trial is a completed one.
            "best_trial_number": best.number,
            "finished_trials": len(study.trials),
        }
    )
    for name, figure in plots.study_figures(study).items():
        mlflow.log_figure(figure, f"tuning/{name}")
        plt.close(figure)
