"""The runs of a step and of its variants: started (or taken up again), tagged, their whole
config logged."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import platform
from collections.abc import Iterator
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

import poster_ml
from poster_ml.config import environment
from poster_ml.tracking import resume, schema
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
    current = environment.project_run_id()
    previous = (
        resume.interrupted_run(experiment_id, step, key, exclude=current)
        if resumable and not restart
        else None
    )
    earlier = previous.info.run_id if previous else None
    resume.fail_dead_runs(experiment_id, keep=current or earlier)
    if earlier is not None:
        log.info(
            f"resuming the interrupted {step} run {earlier} (--restart starts afresh)"
            if current is None
            else f"continuing the interrupted {step} run {earlier} in this run (restart=true starts afresh)"
        )
    reopened = earlier if current is None else None
    with mlflow.start_run(run_id=reopened, log_system_metrics=system_metrics(step)) as run:
        # Runs are named after their step, so the runs table says which is which.
        mlflow.set_tags(step_tags(step, seed) | resume.process_tags(key))
        if earlier is not None and current is not None:
            mlflow.set_tag(resume.CONTINUES, earlier)
            MlflowClient().set_tag(earlier, "poster_ml.continued_in", run.info.run_id)
        if reopened is None:
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
