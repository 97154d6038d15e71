"""The train step: the study's variants, one nested run each, tuned by Optuna (one nested
run per trial) or trained once with the study's values, and the leaderboard.

Every train run owns its variant runs. The run's `Continuation` says which variants an
interrupted run of the same settings finished: one finished in this very run is kept as
it is, one finished in the run this one continues is linked again, not retrained. A tuned
variant's model is its study's best trial's own model, wherever that trial ran."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
from mlflow.projects import ExecutionException

from poster_ml.config import DEFAULT_DATA, AugmentConfig, TrainConfig, TrainStepConfig
from poster_ml.data.prepared import PreparedData
from poster_ml.errors import DatasetError
from poster_ml.steps import project_runs
from poster_ml.tables import leaderboard, markdown_table
from poster_ml.tracking import datasets, logged_models, resume, runs, store

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # The variants module imports TensorFlow, which the step imports late.
    from poster_ml.models.variants import Variant


@dataclasses.dataclass(frozen=True)
class VariantJob:
    """One variant's training in a train run: what it trains on, with which settings (its
    own, after the weights its base really gets), and under which step run."""

    variant: Variant
    data: PreparedData
    config: TrainConfig
    augment: AugmentConfig
    step: TrainStepConfig
    parent: runs.StepRun
    tags: dict[str, str]

    @property
    def name(self) -> str:
        return self.variant.name

    def configs(self) -> dict:
        """The whole config, logged with the model: the train run's, not the variant's."""
        return self.parent.configs


def train_step(config: TrainConfig, augment: AugmentConfig, step: TrainStepConfig):
    """Trains (or tunes) the variants, one nested run each, and returns the leaderboard."""
    from poster_ml.devices import device_info
    from poster_ml.models.bases import resolved_weights, with_resolved_weights
    from poster_ml.models.estimate import announce_long_training
    from poster_ml.models.placement import configure_cpu_replicas
    from poster_ml.models.variants import check_image_size, get_variants

    configure_cpu_replicas()  # Before anything starts TensorFlow's runtime.
    variants = get_variants(step.variants)
    weights = resolved_weights(variants, config)
    data = training_data(step)
    check_image_size(variants, data.image_size)
    announce_long_training(variants, data, config, step.profile)
    configs = {"train": config, "augment": augment, "step": step}
    # Workers sharing a journal or PostgreSQL study run side by side on purpose, each with
    # its own train run; their study (and its variant run) is what resumes.
    shared_study = bool(config.trials and step.storage and not step.storage.startswith("sqlite"))
    with runs.step_run(
        "train", configs, seed=config.seed, resumable=not shared_study, restart=step.restart
    ) as parent:
        tags = device_info() | {"profile": step.profile}
        mlflow.set_tags(tags)
        datasets.dataset_input(data, context="training")
        rows = []
        for variant in variants:
            variant, variant_config, variant_tags = with_resolved_weights(variant, config, weights)
            job = VariantJob(
                variant, data, variant_config, augment, step, parent, tags | variant_tags
            )
            rows.append(variant_row(job))
        if not rows:
            log.info("no variant model was logged by this worker")
            return None
        board = leaderboard(rows)
        logged_models.log_leaderboard(board)
    log.debug(markdown_table(board.drop(columns="model_uri")))
    best = board.iloc[0]
    log.info(
        f"best on validation: {best['variant']} (validation AUC {best['val_auc']:.3f} of "
        f"{len(board)} variants; leaderboard.md in the train run, --verbose prints it)"
    )
    return board


def variant_row(job: VariantJob) -> dict:
    """The variant's leaderboard row: reused when an interrupted run finished it, else
    trained (or tuned) in its variant run."""
    from poster_ml.models.session import releasing_memory

    finished = job.parent.continuation.finished(job.name)
    if finished is not None:
        return reuse_finished(job, finished)
    log.info(
        f"training {job.name}: {job.variant.description}"
        + (f", {job.config.trials} Optuna trials" if job.config.trials else "")
    )
    # Each variant's traced graphs are released once it is logged (see models/session.py).
    train = releasing_memory(tune_variant if job.config.trials else train_once)
    return train(job, job.parent.continuation.unit_to_take_up(job.name))


def training_data(step: TrainStepConfig) -> PreparedData:
    """The prepared dataset that `--data` names. Only the default folder, when missing or
    empty, is filled: a preprocess run of its own prepares the profile's synthetic default
    there (what `main` would run), and train takes that run's dataset. Any other folder must
    hold a prepared dataset (a typo must not start a training on synthetic posters)."""
    folder = Path(step.data)
    if datasets.is_remote_spec(step.data) or (folder.is_dir() and any(folder.iterdir())):
        return datasets.open_data(step.data)
    if step.data != TrainStepConfig().data:
        raise DatasetError(
            f"{step.data} holds no prepared dataset; prepare your posters there first "
            f"(poster-ml preprocess --source POSTERS --out {step.data}), or leave out --data to train on the synthetic default"
        )
    parameters = DEFAULT_DATA[step.profile]
    log.info(
        f"no prepared dataset in {step.data} (the default location): a preprocess run prepares "
        f"{parameters['count']} synthetic posters at {parameters['size']} pixels there first"
    )
    try:
        preprocess = project_runs.run_entry_point(
            "preprocess",
            project_runs.preprocess_parameters(parameters, folder),
            store.configure_tracking(),
        )
    except ExecutionException as error:
        raise DatasetError(f"the preprocess run that train started failed: {error}") from error
    return datasets.open_data(datasets.prepared_uri(preprocess.info.run_id))


def reuse_finished(job: VariantJob, finished: resume.Finished) -> dict:
    """A variant finished before the interruption is not trained again: in this same run it
    is already there; a run that continues another links the same model in a variant run
    of its own."""
    record = finished.record
    if finished.run_id == job.parent.run_id:
        log.info(f"{job.name} finished in run {record['variant_run']}: not trained again")
        return record["row"]
    log.info(
        f"{job.name} finished in the interrupted run {finished.run_id}: its model is linked, not trained again"
    )
    facts = logged_models.trial_facts(record["facts_run"])
    tags = job.tags | {"reused_from": record["variant_run"]}
    with runs.variant_run(job.name, job.parent.run_id, tags) as run:
        datasets.dataset_input(job.data, context="training")
        row = logged_models.link_variant_model(facts, record["row"]["model_uri"], job.data)
        return record_finished(job, row, run.info.run_id, record["facts_run"])


def record_finished(job: VariantJob, row: dict, variant_run: str, facts_run: str) -> dict:
    """Marks the variant finished in the train run, with what a continuing run relinks."""
    record = {"row": row, "variant_run": variant_run, "facts_run": facts_run}
    job.parent.continuation.record(job.name, record)
    return row


def train_once(job: VariantJob, earlier: resume.UnitResumption) -> dict:
    """The study's values, one training, in one variant run. An interrupted variant
    continues from its last finished epoch: in its own run when this train run resumes it,
    in a new run (with the epochs so far) when this train run continues another."""
    from poster_ml.models.fit import train_variant
    from poster_ml.models.progress import EpochProgress

    with runs.variant_run(job.name, job.parent.run_id, job.tags, run_id=earlier.reopen) as run:
        if earlier.reopen is None:
            datasets.dataset_input(job.data, context="training")
        if earlier.adopt is not None:
            resume.adopt_variant_run(earlier.adopt, run.info.run_id)
        logged = resume.last_logged_epoch(run.info.run_id)
        if logged >= 0:
            log.info(f"{job.name}: resuming after epoch {logged + 1}")
        progress = EpochProgress(job.name)
        trained = train_variant(
            job.variant,
            job.data,
            job.config,
            job.augment,
            [runs.epoch_logger(skip_through=logged), progress],
            backup_dir=resume.checkpoint_dir(run.info.run_id),
        )
        log.info(progress.summary(trained))
        row = logged_models.log_trained_variant(trained, job.data, job.configs())
        resume.discard_checkpoints(run.info.run_id)
        return record_finished(job, row, run.info.run_id, run.info.run_id)


def tune_variant(job: VariantJob, earlier: resume.UnitResumption) -> dict:
    """Optuna trials, each a nested run under this train run's variant run; the variant's
    model is the study's best trial's own model (the study may span runs and workers)."""
    from poster_ml.models import tuning

    url = job.step.storage or tuning.default_storage()
    with tuning.single_worker_lock(url):
        study, settings_hash = open_variant_study(job, url)
        study_tags = {"optuna_study": study.study_name, "study_settings_hash": settings_hash}
        with runs.variant_run(
            job.name,
            job.parent.run_id,
            job.tags | study_tags,
            run_id=earlier.reopen,
        ) as variant_run:
            if earlier.reopen is None:
                datasets.dataset_input(job.data, context="training")
            objective = trial_objective(job, study, variant_run.info.run_id)
            tuning.run_trials(study, job.config.trials, objective)
            if not tuning.wait_for_other_workers(study, limit_seconds=10 * job.step.heartbeat):
                log.info(
                    f"{job.name}: other workers' trials still run; linking the best trial finished so far"
                )
            best = tuning.best_trial(study)
            runs.log_study(study, best)
            trial_run = best.user_attrs[tuning.TRIAL_RUN_ATTRIBUTE]
            mlflow.set_tags({"best_trial_run": trial_run, "best_trial_number": str(best.number)})
            facts = logged_models.trial_facts(trial_run)
            row = logged_models.link_variant_model(
                facts, best.user_attrs[tuning.MODEL_ATTRIBUTE], job.data
            )
            if diverged := tuning.diverged_trials(study):
                row["diverged"] = f"{diverged} of {len(study.trials)} trials stopped"
            return record_finished(job, row, variant_run.info.run_id, trial_run)


def open_variant_study(job: VariantJob, url: str):
    """The variant's Optuna study (made or taken up), with trials that a dead worker left
    running failed and queued again, and the hash of its settings."""
    from poster_ml.models import studies, tuning

    settings = studies.study_settings(job.variant, job.config, job.augment, job.data.digest)
    storage = tuning.make_storage(url, job.step.heartbeat)
    name = job.step.study_name or studies.study_name(store.experiment_name(), job.name, settings)
    startup = studies.startup_trials(job.config.startup_trials, job.config.trials)
    study, created = studies.open_study(
        name, storage, job.config.seed, job.config.pruner, job.variant, settings, startup
    )
    line = studies.opening_line(study, created, storage, settings)
    # A study that is new and like no other is no news; a resumed or changed one is.
    (log.debug if line.endswith(f"new study {study.study_name}") else log.info)(line)
    # Under the SQLite lock no other worker is alive: every running trial is orphaned.
    if failed := tuning.fail_dead_trials(study, every_running=url.startswith("sqlite:")):
        log.info(
            f"{job.name}: {failed} trial(s) left running by a dead worker marked failed and queued again"
        )
    return study, studies.settings_hash(settings)


def trial_objective(job: VariantJob, study, variant_run_id: str):
    """Optuna's objective: one training with the trial's values, in a run of its own."""
    from optuna_integration import KerasPruningCallback

    from poster_ml.models import tuning
    from poster_ml.models.fit import train_variant
    from poster_ml.models.progress import EpochProgress

    def objective(trial) -> float:
        values = tuning.search_space(trial, job.variant)
        with runs.trial_run(trial, variant_run_id, values):
            progress = EpochProgress(runs.trial_label(trial))
            callbacks = [
                runs.epoch_logger(),
                # Before the pruning callback, which ends a pruned trial's epoch by raising.
                progress,
                # Epochs are pruned by Keras's approximate AUC; the objective is exact.
                KerasPruningCallback(trial, "val_auc"),
            ]
            tuned = dataclasses.replace(job.config, **values)  # type: ignore[arg-type]  # Search-space names are TrainConfig fields.
            trained = train_variant(job.variant, job.data, tuned, job.augment, callbacks)
            runs.prune_if_diverged(trial, trained.diverged)
            log.info(progress.summary(trained))
            value = trained.validation_auc  # Exact (scikit-learn), of the weights kept.
            mlflow.log_metric("objective_val_auc", value)
            # Only a trial that beats every finished one can end up the best: it keeps its
            # model, so the variant's model is never a retraining.
            if tuning.beats_finished(study, value):
                model_uri = logged_models.log_model(trained, job.data, job.configs())
                trial.set_user_attr(tuning.MODEL_ATTRIBUTE, model_uri)
            return value

    return objective
