"""The train step: the study's variants, one nested run each, tuned by Optuna (one nested
run per trial) or trained once with the study's values, and the leaderboard.

Every train run owns its variant runs. A variant finished by the interrupted run this one
resumes or continues is linked again, not retrained; a tuned variant's model is its
study's best trial's own model, wherever that trial ran."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mlflow.projects import ExecutionException

from poster_ml.config import DEFAULT_DATA, AugmentConfig, TrainConfig, TrainStepConfig
from poster_ml.data.prepared import PreparedData
from poster_ml.errors import DatasetError
from poster_ml.tables import leaderboard, markdown_table
from poster_ml.tracking import (
    artifacts,
    prepared_runs,
    project_runs,
    resume,
    runs,
    trials,
    variant_models,
)


def train_step(config: TrainConfig, augment: AugmentConfig, step: TrainStepConfig):
    """Trains (or tunes) the variants, one nested run each, and returns the leaderboard."""
    from poster_ml.devices import device_info
    from poster_ml.models.bases import check_weights
    from poster_ml.models.placement import configure_cpu_replicas
    from poster_ml.models.session import releasing_memory
    from poster_ml.models.variants import check_image_size, get_variants

    configure_cpu_replicas()  # Before anything starts TensorFlow's runtime.
    variants = get_variants(step.variants)
    weights = check_weights(
        [variant.base for variant in variants if variant.pretrained], config.weights
    )
    if config.weights == "auto" and weights:
        print(
            "weights=auto: "
            + ", ".join(
                f"{base} {'ImageNet' if value == 'imagenet' else 'random (no ImageNet weights here)'}"
                for base, value in weights.items()
            )
        )
    data = training_data(step)
    check_image_size(variants, data.image_size)
    configs = {"train": config, "augment": augment, "step": step}
    # Workers sharing a journal or PostgreSQL study run side by side on purpose, each with
    # its own train run; their study (and its variant run) is what resumes.
    shared_study = bool(config.trials and step.storage and not step.storage.startswith("sqlite"))
    with runs.step_run(
        "train", configs, seed=config.seed, resumable=not shared_study, restart=step.restart
    ) as parent:
        tags = device_info() | {"profile": step.profile}
        runs.set_tags(tags)
        artifacts.dataset_input(data, context="training")
        predecessor = runs.predecessor(parent)
        rows = []
        for variant in variants:
            variant, variant_config, variant_tags = with_resolved_weights(variant, config, weights)
            previous = runs.child_run(parent.info.run_id, variant.name)
            if previous is None and predecessor is not None:
                previous = runs.child_run(predecessor, variant.name)
            if (reused := reuse_finished(previous, data, parent, tags | variant_tags)) is not None:
                rows.append(reused)
                continue
            print(
                f"training {variant.name}: {variant.description}"
                + (f", {config.trials} Optuna trials" if config.trials else "")
            )
            # Each variant's traced graphs are released once it is logged (see models/session.py).
            train = releasing_memory(tune_variant if config.trials else train_once)
            rows.append(
                train(
                    variant,
                    data,
                    variant_config,
                    augment,
                    step,
                    parent,
                    tags | variant_tags,
                    configs,
                    previous,
                )
            )
        rows = [row for row in rows if row is not None]
        if not rows:
            print("no variant model was logged by this worker")
            return None
        board = leaderboard(rows)
        artifacts.log_leaderboard(board)
    print(markdown_table(board.drop(columns="model_uri")))
    return board


def training_data(step: TrainStepConfig) -> PreparedData:
    """The prepared dataset that `--data` names. Only the default folder, when missing or
    empty, is filled: a preprocess run of its own prepares the profile's synthetic default
    there (what `main` would run), and train takes that run's dataset. Any other folder must
    hold a prepared dataset (a typo must not start a training on synthetic posters)."""
    folder = Path(step.data)
    if prepared_runs.is_remote_spec(step.data) or (folder.is_dir() and any(folder.iterdir())):
        return prepared_runs.open_data(step.data)
    if step.data != TrainStepConfig().data:
        raise DatasetError(
            f"{step.data} holds no prepared dataset; prepare your posters there first "
            f"(poster-ml preprocess --source POSTERS --out {step.data}), or leave out --data to train on the synthetic default"
        )
    parameters = {name: str(value) for name, value in DEFAULT_DATA[step.profile].items()}
    print(
        f"no prepared dataset in {step.data} (the default location): a preprocess run prepares "
        f"{parameters['count']} synthetic posters at {parameters['size']} pixels there first"
    )
    try:
        preprocess = project_runs.run_entry_point(
            # MLflow runs the entry point in the project's folder: the path must be absolute.
            "preprocess",
            parameters | {"out": str(folder.resolve())},
            runs.configure_tracking(),
        )
    except ExecutionException as error:
        raise DatasetError(f"the preprocess run that train started failed: {error}") from error
    return prepared_runs.open_data(project_runs.prepared_uri(preprocess))


CNN_LEARNING_RATE = 1e-3
"""The study's rate for its CNNs trained from scratch; a pretrained architecture that
starts from random weights gets it, since it is trained from scratch too (at the fine-tuning
rates, 1e-6 to 2e-5, even the head on random VGG16 features stays near chance in the
demo's epochs: benchmarks/RESULTS.md)."""


def with_resolved_weights(variant, config: TrainConfig, weights: dict[str, str]):
    """The variant and config to train with, given the weights its base really gets."""
    if not variant.pretrained:
        return variant, config, {}
    resolved = weights[variant.base]
    tags = {"weights": resolved}
    if (
        resolved == "none"
        and config.learning_rate is None
        and variant.learning_rate < CNN_LEARNING_RATE
    ):
        print(
            f"{variant.name} starts from random weights: it trains at the CNN learning rate {CNN_LEARNING_RATE:g}, not the fine-tuning rate {variant.learning_rate:g}"
        )
        variant = dataclasses.replace(variant, learning_rate=CNN_LEARNING_RATE)
        tags["learning_rate_source"] = "cnn_rate_for_random_weights"
    return variant, dataclasses.replace(config, weights=resolved), tags


def own_run(previous, parent):
    """`previous` if it is a variant run of this very train run (one it resumes), else None."""
    if previous is not None and runs.parent_id(previous) == parent.info.run_id:
        return previous
    return None


def reuse_finished(previous, data: PreparedData, parent, tags: dict[str, str]) -> dict | None:
    """The leaderboard row of a variant an interrupted run finished, which is not trained
    again, or None to train it. In that same run it is already there; a run that continues
    another links the same model in a variant run of its own."""
    if previous is None or previous.info.status != "FINISHED":
        return None
    row = variant_models.finished_row(previous.info.run_id)
    if row is None:
        return None
    name = row["variant"]
    if own_run(previous, parent) is not None:
        print(f"{name} finished in run {previous.info.run_id}: not trained again")
        return row
    facts = variant_models.trial_facts(
        previous.data.tags.get("best_trial_run") or previous.info.run_id
    )
    if facts is None:
        return None  # Logged by an older poster-ml, without what a link needs: trained again.
    print(
        f"{name} finished in the interrupted run {runs.parent_id(previous)}: its model is linked, not trained again"
    )
    with runs.variant_run(name, parent, tags | {"reused_from": previous.info.run_id}):
        artifacts.dataset_input(data, context="training")
        return variant_models.link_variant_model(facts, row["model_uri"], data)


def train_once(
    variant, data: PreparedData, config: TrainConfig, augment, step, parent, tags, configs, previous
) -> dict:
    """The study's values, one training, in one variant run. An interrupted variant
    continues from its last finished epoch: in its own run when this train run resumes it,
    in a new run (with the epochs so far) when this train run continues another."""
    from poster_ml.models.fit import train_variant

    own = own_run(previous, parent)
    with runs.variant_run(
        variant.name, parent, tags, run_id=own.info.run_id if own else None
    ) as run:
        if own is None:
            artifacts.dataset_input(data, context="training")
            if previous is not None:
                resume.adopt_variant_run(previous.info.run_id, run.info.run_id)
        logged = resume.last_logged_epoch(run.info.run_id)
        if logged >= 0:
            print(f"{variant.name}: resuming after epoch {logged + 1}")
        trained = train_variant(
            variant,
            data,
            config,
            augment,
            [artifacts.epoch_logger(skip_through=logged)],
            backup_dir=resume.checkpoint_dir(run.info.run_id),
        )
        row = variant_models.log_trained_variant(trained, data, configs)
        resume.discard_checkpoints(run.info.run_id)
        return row


def tune_variant(
    variant, data: PreparedData, config: TrainConfig, augment, step, parent, tags, configs, previous
) -> dict:
    """Optuna trials, each a nested run under this train run's variant run; the variant's
    model is the study's best trial's own model (the study may span runs and workers)."""
    from optuna_integration import KerasPruningCallback

    from poster_ml.models import studies, tuning
    from poster_ml.models.fit import train_variant

    settings = studies.study_settings(variant, config, augment, data.digest)
    url = step.storage or tuning.default_storage()
    storage = tuning.make_storage(url, step.heartbeat)
    name = step.study_name or studies.study_name(runs.experiment_name(), variant.name, settings)
    with tuning.single_worker_lock(url):
        study, created = studies.open_study(
            name, storage, config.seed, config.pruner, variant, settings
        )
        print(studies.opening_line(study, created, storage, settings))
        # Under the SQLite lock no other worker is alive: every running trial is orphaned.
        if failed := tuning.fail_dead_trials(study, every_running=url.startswith("sqlite:")):
            print(
                f"{variant.name}: {failed} trial(s) left running by a dead worker marked failed and queued again"
            )
        own = own_run(previous, parent)
        study_tags = {
            "optuna_study": study.study_name,
            "study_settings_hash": studies.settings_hash(settings),
        }
        with runs.variant_run(
            variant.name, parent, tags | study_tags, run_id=own.info.run_id if own else None
        ) as variant_run:
            if own is None:
                artifacts.dataset_input(data, context="training")

            def objective(trial) -> float:
                values = tuning.search_space(trial, variant)
                with trials.trial_run(trial, variant_run.info.run_id, values):
                    callbacks = [artifacts.epoch_logger(), KerasPruningCallback(trial, "val_auc")]
                    tuned = dataclasses.replace(config, **values)  # type: ignore[arg-type]  # Search-space names are TrainConfig fields.
                    trained = train_variant(variant, data, tuned, augment, callbacks)
                    value = float(trained.best_epoch["val_auc"])
                    trials.log_trial_value(value)
                    # Only a trial that beats every finished one can end up the best: it
                    # keeps its model, so the variant's model is never a retraining.
                    if tuning.beats_finished(study, value):
                        trials.keep_trial_model(
                            trial, variant_models.log_model(trained, data, configs)
                        )
                    return value

            tuning.run_trials(study, config.trials, objective)
            if not tuning.wait_for_other_workers(study, limit_seconds=10 * step.heartbeat):
                print(
                    f"{variant.name}: other workers' trials still run; linking the best trial finished so far"
                )
            best = tuning.best_trial(study)
            trials.log_study(study, best)
            return link_best_trial(variant, best, data, config, augment, configs)


def link_best_trial(
    variant, best, data: PreparedData, config: TrainConfig, augment, configs
) -> dict:
    """Makes the best trial's own model the variant run's model. A best trial that kept no
    model (a study from before trials kept theirs) is trained again, and tagged so."""
    from poster_ml.models import tuning
    from poster_ml.models.fit import train_variant

    trial_run = best.user_attrs.get(tuning.TRIAL_RUN_ATTRIBUTE, "")
    runs.set_tags({"best_trial_run": trial_run, "best_trial_number": str(best.number)})
    model_uri = best.user_attrs.get(tuning.MODEL_ATTRIBUTE)
    facts = variant_models.trial_facts(trial_run) if model_uri and trial_run else None
    if facts is not None:
        return variant_models.link_variant_model(facts, model_uri, data)
    reason = f"best trial {best.number} kept no model"
    print(f"{variant.name}: {reason}; training its parameters again: {best.params}")
    runs.set_tags({"retrained": "true", "retrain_reason": reason})
    trained = train_variant(variant, data, dataclasses.replace(config, **best.params), augment, [])
    return variant_models.log_trained_variant(trained, data, configs)
