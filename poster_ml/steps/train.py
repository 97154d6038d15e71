"""The train step: the study's variants, one nested run each, tuned by Optuna (one nested
run per trial) or trained once with the study's values, and the leaderboard."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from poster_ml.config import AugmentConfig, TrainConfig, TrainStepConfig
from poster_ml.data.prepare import load_or_prepare_default
from poster_ml.data.prepared import PreparedData
from poster_ml.tables import leaderboard, markdown_table
from poster_ml.tracking import artifacts, resume, runs, trials


def train_step(config: TrainConfig, augment: AugmentConfig, step: TrainStepConfig):
    """Trains (or tunes) the variants, one nested run each, and returns the leaderboard."""
    from poster_ml.devices import device_info
    from poster_ml.models.bases import check_weights
    from poster_ml.models.placement import configure_cpu_replicas
    from poster_ml.models.session import releasing_memory
    from poster_ml.models.variants import get_variants

    configure_cpu_replicas()  # Before anything starts TensorFlow's runtime.
    variants = get_variants(step.variants)
    weights = check_weights([variant.base for variant in variants if variant.pretrained], config.weights)
    if config.weights == "auto" and weights:
        print("weights=auto: " + ", ".join(f"{base} {'ImageNet' if value == 'imagenet' else 'random (no ImageNet weights here)'}" for base, value in weights.items()))
    data = load_or_prepare_default(step.data, config.image_size, config.synthetic_count, config.seed, is_default=step.data == TrainStepConfig().data)
    configs = {"train": config, "augment": augment, "step": step}
    # Workers sharing a journal or PostgreSQL study run side by side on purpose, each with
    # its own train run; their study (and its variant run) is what resumes.
    shared_study = bool(config.trials and step.storage and not step.storage.startswith("sqlite"))
    with runs.step_run("train", configs, seed=config.seed, resumable=not shared_study, restart=step.restart) as parent:
        tags = device_info() | {"profile": step.profile}
        runs.set_tags(tags)
        artifacts.dataset_input(data, context="training")
        rows = []
        for variant in variants:
            variant, variant_config, variant_tags = with_resolved_weights(variant, config, weights)
            print(f"training {variant.name}: {variant.description}" + (f", {config.trials} Optuna trials" if config.trials else ""))
            # Each variant's traced graphs are released once it is logged (see models/session.py).
            train = releasing_memory(tune_variant if config.trials else train_once)
            rows.append(train(variant, data, variant_config, augment, step, parent, tags | variant_tags, configs))
        rows = [row for row in rows if row is not None]
        if not rows:
            print("no variant model was logged by this worker")
            return None
        board = leaderboard(rows)
        artifacts.log_leaderboard(board)
    print(markdown_table(board.drop(columns="model_uri")))
    return board


CNN_LEARNING_RATE = 1e-3
"""The study's rate for its CNNs trained from scratch; a pretrained architecture that
starts from random weights gets it, since the fine-tuning rates (1e-6 to 2e-5) cannot move
random weights in a few epochs."""


def with_resolved_weights(variant, config: TrainConfig, weights: dict[str, str]):
    """The variant and config to train with, given the weights its base really gets."""
    if not variant.pretrained:
        return variant, config, {}
    resolved = weights[variant.base]
    tags = {"weights": resolved}
    if resolved == "none" and config.learning_rate is None and variant.learning_rate < CNN_LEARNING_RATE:
        print(f"{variant.name} starts from random weights: it trains at the CNN learning rate {CNN_LEARNING_RATE:g}, not the fine-tuning rate {variant.learning_rate:g}")
        variant = dataclasses.replace(variant, learning_rate=CNN_LEARNING_RATE)
        tags["learning_rate_source"] = "cnn_rate_for_random_weights"
    return variant, dataclasses.replace(config, weights=resolved), tags


def train_once(variant, data: PreparedData, config: TrainConfig, augment, step, parent, tags, configs) -> dict:
    """The study's values, one training, in one variant run. In a resumed train run a
    finished variant is not trained again, and an interrupted one continues from its last
    finished epoch, in the same run."""
    from poster_ml.models.fit import train_variant

    previous = runs.child_run(parent.info.run_id, variant.name)
    if previous is not None and previous.info.status == "FINISHED" and (row := artifacts.finished_row(previous.info.run_id)) is not None:
        print(f"{variant.name} finished in run {previous.info.run_id}: not trained again")
        return row
    with runs.variant_run(variant.name, parent, tags, run_id=previous.info.run_id if previous else None) as run:
        if previous is None:
            artifacts.dataset_input(data, context="training")
        logged = resume.last_logged_epoch(run.info.run_id)
        if logged >= 0:
            print(f"{variant.name}: resuming after epoch {logged + 1}")
        trained = train_variant(variant, data, config, augment, [artifacts.epoch_logger(skip_through=logged)], backup_dir=resume.checkpoint_dir(run.info.run_id))
        row = artifacts.log_trained_variant(trained, data, configs)
        resume.discard_checkpoints(run.info.run_id)
        return row


def tune_variant(variant, data: PreparedData, config: TrainConfig, augment, step, parent, tags, configs) -> dict | None:
    """Optuna trials, each a nested run under the variant's run; the best trial's model is
    the variant's (logged once, by the worker that trained it)."""
    import keras
    from optuna_integration import KerasPruningCallback

    from poster_ml.models import tuning
    from poster_ml.models.fit import train_variant

    url = step.storage or tuning.default_storage()
    name = step.study_name or f"{runs.experiment_name()}.{variant.name}.{data.digest[:12]}"
    best: dict = {"value": float("-inf")}
    with tuning.single_worker_lock(url), tempfile.TemporaryDirectory() as folder:
        study, created = tuning.open_study(name, tuning.make_storage(url, step.heartbeat), config.seed, config.pruner, variant)
        if url.startswith("sqlite:"):
            tuning.retry_orphaned_trials(study)  # The lock says no other worker is running them.
        with runs.variant_run(variant.name, parent, tags, run_id=(shared := trials.shared_variant_run(study, created))) as variant_run:
            if shared is None:
                study.set_user_attr(tuning.VARIANT_RUN_ATTRIBUTE, variant_run.info.run_id)
            artifacts.dataset_input(data, context="training")

            def objective(trial) -> float:
                values = tuning.search_space(trial, variant)
                with trials.trial_run(trial, variant_run.info.run_id, values):
                    callbacks = [artifacts.epoch_logger(), KerasPruningCallback(trial, "val_auc")]
                    trained = train_variant(variant, data, dataclasses.replace(config, **values), augment, callbacks)
                    value = float(trained.best_epoch["val_auc"])
                    trials.log_trial_value(value)
                    if value > best["value"]:
                        # Keep the best trial's model on disk, not in memory, so memory does
                        # not grow from trial to trial.
                        trained.model.save(Path(folder) / "best.keras")
                        best.update(value=value, number=trial.number, trained=dataclasses.replace(trained, model=None))
                    return value

            tuning.run_trials(study, config.trials, objective)
            trials.log_study(study)
            if best.get("number") == study.best_trial.number:
                model = keras.saving.load_model(Path(folder) / "best.keras", compile=False)
                return artifacts.log_trained_variant(dataclasses.replace(best["trained"], model=model), data, configs)
            if tuning.still_running(study):
                print(f"{variant.name}: another worker is still tuning; the last to finish logs the variant's model")
                return None
            # The best trial ran in another process (an earlier, interrupted run, or a worker
            # that has finished): training is seeded, so its parameters give its model again.
            print(f"{variant.name}: training the best trial's parameters once more for the variant's model: {study.best_params}")
            trained = train_variant(variant, data, dataclasses.replace(config, **study.best_params), augment, [])
            return artifacts.log_trained_variant(trained, data, configs)
