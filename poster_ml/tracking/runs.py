"""The runs of a step, of its variants and of their Optuna trials: started (or taken up
again), tagged, their whole config logged, and each epoch's metrics as a variant trains.

Trials are nested MLflow runs opened by hand (not optuna-integration's deprecated
MLflowCallback, which loses the parent run in workers). Each trial is a run `trial-<n>`
under the variant run of the train run that ran it, with the trial's parameters,
per-epoch metrics, final value, Optuna trial number and the host and process running
it. The trial keeps its run's id, host and process id as user attributes, so a later
start can find its run and tell whether its process died. A pruned trial ends KILLED
with the tag `pruned=true`; a failed one FAILED with a one-line reason, on the run and on
the trial.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import platform
from collections.abc import Iterator
from typing import Any

import matplotlib.pyplot as plt
import mlflow
import optuna
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

import poster_ml
from poster_ml.config import environment
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
from poster_ml.tracking import resume, schema
from poster_ml.tracking.resume import owner_tags
from poster_ml.tracking.store import configure_tracking, mark_model_training, ui_link

log = logging.getLogger(__name__)


def config_params(configs: dict[str, Any], step: str, logged: dict[str, str]) -> dict[str, Any]:
    """Flat run parameters named '<concern>.<setting>', e.g. 'preprocess.seed'.

    The prefix keeps them apart from the raw strings `mlflow run` logs for MLproject
    parameters, which MLflow would refuse to overwrite with the typed values. A setting of
    the entry point's own concern that `mlflow run` already logged (`logged`) is not
    logged a second time.
    """
    own = (step, "step")  # The train entry point's options are its "step" concern.
    return {
        f"{concern}.{name}": value
        for concern, config in configs.items()
        for name, value in dataclasses.asdict(config).items()
        if not (concern in own and name in logged)
    }


@dataclasses.dataclass(frozen=True)
class StepRun:
    """The run of one step, what it continues, and the whole config it logged."""

    run: mlflow.ActiveRun
    continuation: resume.Continuation
    configs: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.run.info.run_id


@contextlib.contextmanager
def step_run(
    step: str, configs: dict[str, Any], seed: int, resumable: bool = False, restart: bool = False
) -> Iterator[StepRun]:
    """Starts (or, under `mlflow run`, continues) the run of one step, logging its whole config.

    A resumable step started again with the same config (and no `restart`) takes up the
    run that a dead process left unfinished: `poster-ml` reopens that run; under `mlflow
    run`, which has made a new run already, the new run continues it (tag
    poster_ml.continues). Either way the step gets a `resume.Continuation` that knows
    what was finished. Runs left RUNNING by other dead processes of this host, nested
    ones included, are marked FAILED (resume.py).
    """
    experiment_id = configure_tracking()
    key = resume.config_key(step, configs)
    plan = resume.step_resumption(experiment_id, step, key, resumable, restart)
    earlier = plan.earlier
    if earlier is not None:
        log.info(
            f"continuing the interrupted {step} run {earlier} in this run (restart=true starts afresh)"
            if plan.continues_in_new_run
            else f"resuming the interrupted {step} run {earlier} (--restart starts afresh)"
        )
    with mlflow.start_run(run_id=plan.reopen, log_system_metrics=system_metrics(step)) as run:
        # Runs are named after their step, so the runs table says which is which.
        mlflow.set_tags(step_tags(step, seed) | resume.process_tags(key))
        if earlier is not None and plan.continues_in_new_run:
            mlflow.set_tag(resume.CONTINUES, earlier)
            MlflowClient().set_tag(earlier, "poster_ml.continued_in", run.info.run_id)
        if plan.reopen is None:
            logged = MlflowClient().get_run(run.info.run_id).data.params
            mlflow.log_params(config_params(configs, step, logged))
            mlflow.log_dict(dataclasses_as_dicts(configs), "config.json")
        mark_model_training(run.info.experiment_id)
        # Said first, so that a person can watch the run in the UI while it works.
        log.info(f"{step} run: {ui_link(run.info.experiment_id, run.info.run_id)}")
        yield StepRun(run, resume.Continuation(run.info.run_id, earlier), configs)


def step_tags(step: str, seed: int) -> dict[str, str]:
    return {
        "mlflow.runName": step,
        schema.STEP_TAG: step,
        "poster_ml.version": poster_ml.__version__,
        "seed": str(seed),
        "python": platform.python_version(),
    }


def dataclasses_as_dicts(configs: dict[str, Any]) -> dict[str, dict]:
    return {concern: dataclasses.asdict(config) for concern, config in configs.items()}


SYSTEM_METRICS_STEPS = ("train", "evaluate")


def system_metrics(step: str) -> bool:
    """Whether the run logs MLflow's system metrics (CPU, memory, disk, network; GPU
    through nvidia-ml-py where one exists): on for the long steps, off with MLflow's own
    switch MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false."""
    return step in SYSTEM_METRICS_STEPS and environment.system_metrics_enabled()


@contextlib.contextmanager
def variant_run(
    name: str, parent_run_id: str, tags: dict[str, str], run_id: str | None = None
) -> Iterator[mlflow.ActiveRun]:
    """A nested run for one variant under the train step's run; with `run_id`, that run
    again (the variant run of an interrupted train run that this process resumes)."""
    if run_id is not None:
        with mlflow.start_run(run_id=run_id, nested=True) as run:
            yield run
        return
    with mlflow.start_run(run_name=name, nested=True, parent_run_id=parent_run_id) as run:
        mlflow.set_tags(
            tags | {"variant": name} | schema.step_tag("train_variant") | resume.owner_tags()
        )
        yield run


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
