"""Tuning with Optuna: the search space, the study and its storage, and running trials.

The search space is `search_space` (`study_values` gives the study's own point in it).
The objective is the exact validation AUC of the weights early stopping kept; the test
split never takes part. The study's own values are enqueued as the first trial, so
tuning can only match or beat them on validation. Storage is an SQLite file for one
process, a journal file for several processes on one machine, or PostgreSQL for workers
on many machines. PostgreSQL uses heartbeats so that a killed worker's trial is marked
failed and retried; the journal has none, so each trial records its host and process id
and a start on the same host fails the trials of processes that are gone (a dead worker
on another host is noticed only by a start on that host).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import inspect
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from poster_ml import databases
from poster_ml.config import environment
from poster_ml.errors import ConfigError
from poster_ml.locks import exclusive
from poster_ml.processes import HOST, process_alive

if TYPE_CHECKING:
    from poster_ml.models.variants import Variant

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
TRIAL_RUN_ATTRIBUTE = "mlflow_run_id"
MODEL_ATTRIBUTE = "model_uri"
HOST_ATTRIBUTE, PID_ATTRIBUTE, FAILURE_ATTRIBUTE = "host", "pid", "failure_reason"
DIVERGED_ATTRIBUTE = "diverged"


def search_space(trial: optuna.Trial, variant: Variant) -> dict[str, float | int]:
    """What tuning explores for a variant: dropout for every head, the learning rate on a
    log scale around the study's, and for fine-tuned pretrained bases how many of the
    base's own blocks train. The cached-features variant tunes its head only."""
    values: dict[str, float | int] = {
        "dropout": trial.suggest_float("dropout", 0.0, 0.6),
        "learning_rate": trial.suggest_float(
            "learning_rate", variant.learning_rate / 10, variant.learning_rate * 10, log=True
        ),
    }
    if tunes_unfreezing(variant):
        # Imported here, not at the top, as is Keras's session below: tracking/runs.py,
        # which every step opens, imports this module for its trial attributes, and a
        # preprocess process should not spend seconds importing TensorFlow.
        from poster_ml.models.bases import PRETRAINED_BASES

        values["unfreeze_blocks"] = trial.suggest_int(
            "unfreeze_blocks", 0, PRETRAINED_BASES[variant.base].max_unfreeze
        )
    return values


def tunes_unfreezing(variant: Variant) -> bool:
    return variant.pretrained and not variant.cached_features and variant.unfreeze_blocks > 0


def study_values(variant: Variant) -> dict[str, float | int]:
    """The study's own values in the search space's names: the first trial of every study."""
    values: dict[str, float | int] = {
        "dropout": variant.dropout,
        "learning_rate": variant.learning_rate,
    }
    if tunes_unfreezing(variant):
        values["unfreeze_blocks"] = variant.unfreeze_blocks
    return values


def default_storage() -> str:
    """An SQLite file optuna.db beside the MLflow store (never inside MLflow's database:
    both keep a table named alembic_version)."""
    folder = databases.store_folder(environment.tracking_uri())
    return f"sqlite:///{folder / 'optuna.db'}"


def make_storage(url: str, heartbeat_seconds: int):
    """The Optuna storage for a URL: sqlite:///..., postgresql+psycopg://..., or journal:PATH."""
    # Heartbeats and their retry callback are marked experimental; they are what we want.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if url.startswith("journal:"):
        return JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    if not url.startswith(("sqlite:", "postgresql", "mysql")):
        raise ConfigError(
            f"storage must be sqlite:///PATH, postgresql+psycopg://... or journal:PATH, got {url!r}"
        )
    if not databases.is_postgresql(url):
        return rdb_storage(url, heartbeat_seconds)
    # Workers started at once on a fresh studies database take turns creating its tables;
    # a missing role or database is one line that names the studies database. A connection
    # cut meanwhile (the server restarting) is tried again, twice.
    for _ in range(2):
        try:
            with databases.schema_turn(url, "studies"):
                return rdb_storage(url, heartbeat_seconds)
        except databases.CONNECTION_CUT:
            time.sleep(2.0)
    with databases.schema_turn(url, "studies"):  # The last try: its error is the answer.
        return rdb_storage(url, heartbeat_seconds)


def reconnecting(method: Callable) -> Callable:
    """`method`, tried again (twice, after 0.5 and 1 s) when the server cut its connection
    midway, as a restart or failover does to a query under way."""

    @functools.wraps(method)
    def call(self, *arguments, **options):
        for attempt in range(2):
            try:
                return method(self, *arguments, **options)
            except (optuna.exceptions.StorageInternalError, *databases.CONNECTION_CUT) as error:  # type: ignore[misc]  # A tuple built at import.
                if not databases.is_connection_cut(error):
                    raise
                time.sleep(0.5 * 2**attempt)
        return method(self, *arguments, **options)

    return call


# Every call the study makes: the public ones, and the private ones Optuna's cache in front
# of the storage calls directly.
CACHE_CALLS = (
    "_create_new_trial",
    "_get_best_trial_id",
    "_get_stale_trial_ids",
    "_get_trials",
    "_set_trial_param",
)


@functools.cache
def reconnecting_rdb_storage() -> type[RDBStorage]:
    """Optuna's database storage, each of whose calls is tried again when the server cut its
    connection midway (a connection cut while idle is caught before use by pool_pre_ping).
    Built on first use; a private call that Optuna renamed is an error that says so rather
    than a call left without retries."""
    missing = [name for name in CACHE_CALLS if not inspect.isfunction(vars(RDBStorage).get(name))]
    if missing:
        raise RuntimeError(
            f"optuna {optuna.__version__}'s RDBStorage has no {', '.join(missing)}: update CACHE_CALLS in models/tuning.py"
        )
    methods = {
        name: reconnecting(method)
        for name, method in vars(RDBStorage).items()
        if inspect.isfunction(method) and (not name.startswith("_") or name in CACHE_CALLS)
    }
    return type("ReconnectingRDBStorage", (RDBStorage,), methods)


def rdb_storage(url: str, heartbeat_seconds: int) -> RDBStorage:
    """Optuna's database storage. A database server that restarts (or fails over) closes
    every pooled connection: each is tested before use (SQLAlchemy's pool_pre_ping) and
    replaced, and a call it cut midway is tried again (reconnecting_rdb_storage)."""
    kind = RDBStorage if url.startswith("sqlite") else reconnecting_rdb_storage()
    return kind(
        url,
        heartbeat_interval=heartbeat_seconds,
        grace_period=2 * heartbeat_seconds,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
        engine_kwargs={} if url.startswith("sqlite") else {"pool_pre_ping": True},
    )


@contextlib.contextmanager
def single_worker_lock(url: str) -> Iterator[None]:
    """For an SQLite storage, holds a lock file beside it: a second worker is refused with a
    message that names the alternatives, never a "database is locked" deep in a trial."""
    if not url.startswith("sqlite:///"):
        yield
        return
    message = (
        f"another worker is tuning with the SQLite study storage {url}, which serves one process; "
        "for several processes on one machine use --storage journal:PATH, "
        "for workers on several machines --storage postgresql+psycopg://USER@HOST/DATABASE"
    )
    with exclusive(
        Path(url.removeprefix("sqlite:///") + ".lock"), wait=False, busy_message=message
    ):
        yield


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"pruner must be median, hyperband or none, got {name!r}")


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


IDENTITY_GRACE_SECONDS = 60.0
"""A live worker records its host and process id on a trial within moments of starting it
(runs.trial_run's first lines); a trial without them after this long lost its worker
in between."""


def fail_dead_trials(
    study: optuna.Study, every_running: bool = False, grace_seconds: float = IDENTITY_GRACE_SECONDS
) -> int:
    """Fails and queues again each RUNNING trial whose process is gone: one of this host
    whose process id no longer exists, one that never recorded its process within
    `grace_seconds`, or every running one when `every_running` (the SQLite lock says no
    other worker is alive). Returns how many it failed."""
    retry = RetryHeartbeatStaleTrialCallback(max_retry=3)
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if every_running or worker_is_gone(trial, grace_seconds):
            study.tell(trial.number, state=TrialState.FAIL)
            retry(study, study.get_trials(deepcopy=False)[trial.number])
            failed += 1
    return failed


def worker_is_gone(trial: optuna.trial.FrozenTrial, grace_seconds: float) -> bool:
    attributes = trial.user_attrs
    if PID_ATTRIBUTE not in attributes:
        started = trial.datetime_start or datetime.datetime.now()
        return (datetime.datetime.now() - started).total_seconds() > grace_seconds
    mine = attributes.get(HOST_ATTRIBUTE) == HOST
    return mine and not process_alive(int(attributes[PID_ATTRIBUTE]))


def diverged_trials(study: optuna.Study) -> int:
    """How many of the study's trials were stopped because their training diverged."""
    return sum(DIVERGED_ATTRIBUTE in trial.user_attrs for trial in study.get_trials(deepcopy=False))


def beats_finished(study: optuna.Study, value: float) -> bool:
    """Whether `value` beats every completed trial of the study (or none has completed)."""
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    values = [trial.value for trial in completed if trial.value is not None]
    return not values or value > max(values)


def still_running(study: optuna.Study) -> bool:
    """Whether another worker has trials under way on this study."""
    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def wait_for_other_workers(study: optuna.Study, limit_seconds: float) -> bool:
    """Waits until no trial of the study is running, so that every worker links the same
    best trial; a trial whose process died (heartbeat, or this host's process table) is
    failed meanwhile. Returns False if trials still ran after `limit_seconds`."""
    deadline, told = time.monotonic() + limit_seconds, False
    while still_running(study):
        optuna.storages.fail_stale_trials(study)
        fail_dead_trials(study)
        if time.monotonic() > deadline:
            return False
        if not told:
            log.info(f"{study.study_name}: waiting for the trials other workers are running")
            told = True
        time.sleep(1.0)
    return True


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The study's best trial, or one line on why there is none."""
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if completed:
        return study.best_trial
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    reason = (
        failed[0].user_attrs.get(FAILURE_ATTRIBUTE, "no reason recorded")
        if failed
        else "none finished"
    )
    raise ConfigError(
        f"every trial of study {study.study_name} failed or was pruned ({len(study.trials)} trials); the first failure: {reason}"
    )


def run_trials(study: optuna.Study, total: int, objective: Callable[[optuna.Trial], float]) -> None:
    """Runs trials until the study, across every worker, has `total` finished ones.

    After each trial a worker stops once finished, running and queued trials together
    reach `total`: counting the other workers' trials under way keeps them from starting
    one too many between them.
    """
    from poster_ml.models.session import releasing_memory

    remaining = total - finished_trials(study)
    if remaining > 0:
        cap = MaxTrialsCallback(total, states=(*FINISHED, TrialState.RUNNING, TrialState.WAITING))
        # A failed trial (one bad setting, say) is recorded and tuning goes on.
        study.optimize(
            releasing_memory(objective), n_trials=remaining, callbacks=[cap], catch=(Exception,)
        )
