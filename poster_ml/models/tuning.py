"""Tuning with Optuna: the search space, the study and its storage, and running trials.

The search space is one function. The objective is the best-epoch validation AUC; the
test split never takes part. The study's own values are enqueued as the first trial, so
tuning can only match or beat them on validation. Storage is an SQLite file for one
process, a journal file for several processes on one machine, or PostgreSQL for workers
on many machines; the latter two use heartbeats so that a killed worker's trial is
marked failed and retried.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from poster_ml.errors import ConfigError
from poster_ml.locks import exclusive
from poster_ml.models.bases import PRETRAINED_BASES
from poster_ml.models.session import releasing_memory
from poster_ml.models.variants import Variant

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
VARIANT_RUN_ATTRIBUTE = "mlflow_variant_run_id"
TRIAL_RUN_ATTRIBUTE = "mlflow_run_id"


def search_space(trial: optuna.Trial, variant: Variant) -> dict[str, float | int]:
    """What tuning explores for a variant: dropout for every head, the learning rate on a
    log scale around the study's, and for fine-tuned pretrained bases how many of the
    base's own blocks train. The cached-features variant tunes its head only."""
    values: dict[str, float | int] = {
        "dropout": trial.suggest_float("dropout", 0.0, 0.6),
        "learning_rate": trial.suggest_float("learning_rate", variant.learning_rate / 10, variant.learning_rate * 10, log=True),
    }
    if tunes_unfreezing(variant):
        values["unfreeze_blocks"] = trial.suggest_int("unfreeze_blocks", 0, PRETRAINED_BASES[variant.base].max_unfreeze)
    return values


def tunes_unfreezing(variant: Variant) -> bool:
    return variant.pretrained and not variant.cached_features and variant.unfreeze_blocks > 0


def study_values(variant: Variant) -> dict[str, float | int]:
    """The study's own values in the search space's names: the first trial of every study."""
    values: dict[str, float | int] = {"dropout": variant.dropout, "learning_rate": variant.learning_rate}
    if tunes_unfreezing(variant):
        values["unfreeze_blocks"] = variant.unfreeze_blocks
    return values


def default_storage() -> str:
    """An SQLite file optuna.db beside the MLflow store (never inside MLflow's database:
    both keep a table named alembic_version)."""
    tracking = os.environ.get("MLFLOW_TRACKING_URI", "")
    folder = Path(tracking.removeprefix("sqlite:///")).parent if tracking.startswith("sqlite:///") else Path.cwd()
    return f"sqlite:///{folder / 'optuna.db'}"


def make_storage(url: str, heartbeat_seconds: int):
    """The Optuna storage for a URL: sqlite:///..., postgresql+psycopg://..., or journal:PATH."""
    # Heartbeats and their retry callback are marked experimental; they are what we want.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if url.startswith("journal:"):
        return JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    if not url.startswith(("sqlite:", "postgresql", "mysql")):
        raise ConfigError(f"storage must be sqlite:///PATH, postgresql+psycopg://... or journal:PATH, got {url!r}")
    return RDBStorage(
        url,
        heartbeat_interval=heartbeat_seconds,
        grace_period=2 * heartbeat_seconds,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
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
    with exclusive(Path(url.removeprefix("sqlite:///") + ".lock"), wait=False, busy_message=message):
        yield


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"pruner must be median, hyperband or none, got {name!r}")


def open_study(name: str, storage, seed: int, pruner: str, variant: Variant) -> tuple[optuna.Study, bool]:
    """Creates the study, or loads it to resume or to join other workers; returns it and
    whether this process created it. A new study starts with the study's values."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    options = {"study_name": name, "storage": storage, "sampler": optuna.samplers.TPESampler(seed=seed), "pruner": make_pruner(pruner)}
    try:
        study = optuna.create_study(direction="maximize", **options)
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(**options), False
    study.enqueue_trial(study_values(variant))
    return study, True


def shared_attribute(study: optuna.Study, key: str, wait_seconds: float = 60.0) -> str | None:
    """A study user attribute that the worker that created the study sets, once it is
    there (another worker may be a moment behind); None if it never comes."""
    deadline = time.monotonic() + wait_seconds
    while True:
        value = study._storage.get_study_user_attrs(study._study_id).get(key)
        if value is not None or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def retry_orphaned_trials(study: optuna.Study) -> None:
    """With the single-worker lock held, a RUNNING trial belongs to a process that died:
    it is failed and queued again at once, as a heartbeat would after its grace period."""
    retry = RetryHeartbeatStaleTrialCallback(max_retry=3)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        retry(study, study.get_trials(deepcopy=False)[trial.number])


def still_running(study: optuna.Study) -> bool:
    """Whether another worker has trials under way or queued on this study."""
    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)))


def run_trials(study: optuna.Study, total: int, objective: Callable[[optuna.Trial], float]) -> None:
    """Runs trials until the study, across every worker, has `total` finished ones.

    After each trial a worker stops once finished, running and queued trials together
    reach `total`: counting the other workers' trials under way keeps them from starting
    one too many between them.
    """
    remaining = total - finished_trials(study)
    if remaining > 0:
        cap = MaxTrialsCallback(total, states=(*FINISHED, TrialState.RUNNING, TrialState.WAITING))
        # A failed trial (one bad setting, say) is recorded and tuning goes on.
        study.optimize(releasing_memory(objective), n_trials=remaining, callbacks=[cap], catch=(Exception,))
