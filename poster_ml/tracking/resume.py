"""Nothing lost when a step is killed: which runs a dead process of this project left
RUNNING, which interrupted run to take up, what of it is finished (`Continuation`), and
where each run keeps its checkpoints.

A step run carries the host and process id that run it and a key of its whole config.
The next start of the same step with the same config (and no --restart) resumes the
latest run of that key that did not finish; any other run left RUNNING by a process of
this host that no longer exists is marked FAILED.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

import mlflow
from mlflow.entities import RunStatus
from mlflow.tracking import MlflowClient

from poster_ml.config import environment
from poster_ml.databases import store_folder
from poster_ml.errors import TrackingStoreError
from poster_ml.processes import HOST, process_alive
from poster_ml.tracking import schema
from poster_ml.tracking.store import load_run_dict

HOST_TAG, PID_TAG, KEY_TAG = "poster_ml.host", "poster_ml.pid", "poster_ml.resume_key"
CONTINUES = "poster_ml.continues"
"""The tag of a run that continues an interrupted one: a step run under `mlflow run`, which
has made a new run already, or a variant run that goes on from another's checkpoints."""


@dataclasses.dataclass(frozen=True)
class Finished:
    """What a finished unit (one variant) recorded, and the run it was recorded in."""

    record: dict
    run_id: str


@dataclasses.dataclass(frozen=True)
class Continuation:
    """The one way a step takes up interrupted work. `run_id` is this step's run; `earlier`
    the interrupted run of the same step and settings that it continues: this very run
    when `poster-ml` reopened it, another when `mlflow run` had made a new one, or None.

    A step asks, for each unit, whether it finished (`finished`) and, if not,
    how to go on with it (`unit_to_take_up`); it records each unit it finishes (`record`)."""

    run_id: str
    earlier: str | None = None

    def finished(self, unit: str) -> Finished | None:
        """The record of `unit` finished in this run or the earlier one (this run first)."""
        for run_id in dict.fromkeys(filter(None, (self.run_id, self.earlier))):
            record = load_run_dict(run_id, f"finished/{unit}.json")
            if record is not None:
                return Finished(record, run_id)
        return None

    def record(self, unit: str, record: dict) -> None:
        """Marks `unit` finished in this run, with what a later run needs to reuse it."""
        MlflowClient().log_dict(self.run_id, record, f"finished/{unit}.json")

    def unit_run(self, unit: str) -> mlflow.entities.Run | None:
        """The latest run of an unfinished unit: under this run, else under the earlier one."""
        found = schema.child_run_named(self.run_id, unit)
        if found is None and self.earlier not in (None, self.run_id):
            found = schema.child_run_named(self.earlier, unit)
        return found

    def owns(self, unit_run: mlflow.entities.Run) -> bool:
        """Whether a unit's run belongs to this step run (one this process takes up again)."""
        return unit_run.data.tags.get(schema.PARENT_TAG) == self.run_id

    def unit_to_take_up(self, unit: str) -> UnitResumption:
        """How an unfinished unit goes on: in its own run again when this step run reopened
        the interrupted one (`reopen`), or in a new run that adopts the interrupted unit
        run's epochs when this step run continues another (`adopt`); neither when the unit
        never started."""
        earlier = self.unit_run(unit)
        if earlier is None:
            return UnitResumption()
        if self.owns(earlier):
            return UnitResumption(reopen=earlier.info.run_id)
        return UnitResumption(adopt=earlier.info.run_id)


@dataclasses.dataclass(frozen=True)
class UnitResumption:
    """The run of an interrupted unit to reopen, or the one whose epochs a new run adopts."""

    reopen: str | None = None
    adopt: str | None = None


@dataclasses.dataclass(frozen=True)
class StepResumption:
    """How a step run starts: `earlier` is the interrupted run of the same step and settings
    it takes up (None: it starts afresh); `reopen` is that run when `poster-ml` reopens it,
    None when `mlflow run` has made a new run already, which then continues it."""

    earlier: str | None
    reopen: str | None

    @property
    def continues_in_new_run(self) -> bool:
        return self.earlier is not None and self.reopen is None


def step_resumption(
    experiment_id: str, step: str, key: str, resumable: bool, restart: bool
) -> StepResumption:
    """The one decision of how a step run starts, for every step and both ways of starting
    it. Runs left RUNNING by other dead processes of this host, nested ones included, are
    marked FAILED on the way."""
    current = environment.project_run_id()
    previous = (
        interrupted_run(experiment_id, step, key, exclude=current)
        if resumable and not restart
        else None
    )
    earlier = previous.info.run_id if previous else None
    fail_dead_runs(experiment_id, keep=current or earlier)
    return StepResumption(earlier, earlier if current is None else None)


def owner_tags() -> dict[str, str]:
    """The host and process that run a run, so that a later start can tell it died."""
    return {HOST_TAG: HOST, PID_TAG: str(os.getpid())}


def process_tags(key: str) -> dict[str, str]:
    return owner_tags() | {KEY_TAG: key}


def config_key(step: str, configs: dict) -> str:
    """The identity of a step's settings (all but `restart`), which a resumed run must share."""
    plain = {
        concern: {k: v for k, v in dataclasses.asdict(config).items() if k != "restart"}
        for concern, config in configs.items()
    }
    return hashlib.sha256(
        json.dumps({"step": step, **plain}, sort_keys=True, default=str).encode()
    ).hexdigest()[:24]


def dead(run: mlflow.entities.Run) -> bool:
    """Left RUNNING by a process of this host that no longer exists."""
    tags = run.data.tags
    return (
        run.info.status == "RUNNING"
        and tags.get(HOST_TAG) == HOST
        and PID_TAG in tags
        and not process_alive(int(tags[PID_TAG]))
    )


def interrupted_run(
    experiment_id: str, step: str, key: str, exclude: str | None = None
) -> mlflow.entities.Run | None:
    """The latest run of this step and config (other than `exclude`) that did not finish,
    if its process is gone."""
    found = schema.runs_of_config(experiment_id, step, KEY_TAG, key)
    runs = [run for run in found if run.info.run_id != exclude][:1]
    if not runs or runs[0].info.status == "FINISHED":
        return None
    run = runs[0]
    if run.info.status == "RUNNING" and not dead(run):
        where = f"process {run.data.tags.get(PID_TAG)} on {run.data.tags.get(HOST_TAG)}"
        raise TrackingStoreError(
            f"run {run.info.run_id} with these settings is still running ({where}); wait for it, or pass --restart to start another"
        )
    return run


def fail_dead_runs(experiment_id: str, keep: str | None = None) -> list[str]:
    """Marks FAILED every run of this experiment that a dead process of this host left
    RUNNING (but `keep` and its children, which are about to resume); returns their ids."""
    client = MlflowClient()
    failed = []
    for run in schema.running_runs(experiment_id):
        if run.info.run_id == keep or (keep and run.data.tags.get(schema.PARENT_TAG) == keep):
            continue
        parent = run.data.tags.get(schema.PARENT_TAG)
        orphan = parent is not None and dead_by_id(client, parent)
        if dead(run) or orphan:
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
            client.set_tag(
                run.info.run_id,
                schema.FAILURE_TAG,
                "its process died; marked FAILED by the next start",
            )
            failed.append(run.info.run_id)
    return failed


def dead_by_id(client: MlflowClient, run_id: str) -> bool:
    run = client.get_run(run_id)
    return dead(run) or (
        run.info.status == "FAILED" and run.data.tags.get(schema.FAILURE_TAG) is not None
    )


def checkpoint_dir(run_id: str) -> Path:
    """Where a run keeps its per-epoch checkpoints, beside the tracking store (or in the
    working directory for a remote store)."""
    return store_folder(mlflow.get_tracking_uri()) / "checkpoints" / run_id


def discard_checkpoints(run_id: str) -> None:
    shutil.rmtree(checkpoint_dir(run_id), ignore_errors=True)


def adopt_variant_run(old_run_id: str, new_run_id: str) -> None:
    """Carries an interrupted variant run's work into the run that continues it: its
    checkpoints (so training goes on from its last finished epoch) and its epoch metrics."""
    client = MlflowClient()
    if checkpoint_dir(old_run_id).is_dir() and not checkpoint_dir(new_run_id).exists():
        checkpoint_dir(old_run_id).rename(checkpoint_dir(new_run_id))
    metrics = [
        metric
        for key in client.get_run(old_run_id).data.metrics
        for metric in client.get_metric_history(old_run_id, key)
    ]
    for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics a call.
        client.log_batch(new_run_id, metrics=metrics[start : start + 1000])
    client.set_tag(new_run_id, CONTINUES, old_run_id)


def last_logged_epoch(run_id: str) -> int:
    """The last epoch (0-based step) whose metrics the run has, or -1."""
    history = MlflowClient().get_metric_history(run_id, "loss")
    return max((metric.step for metric in history), default=-1)
