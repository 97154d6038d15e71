"""Training one variant: model, callbacks that watch validation metrics, the feature cache."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path

import keras
import pandas as pd

from poster_ml import disk
from poster_ml.config import AugmentConfig, TrainConfig
from poster_ml.data.batches import Streaming, image_batches, streamed_batches
from poster_ml.data.prepared import PreparedData
from poster_ml.devices import has_gpu
from poster_ml.errors import ConfigError
from poster_ml.models.feature_cache import cached_features, feature_cache_dir
from poster_ml.models.placement import (
    augment_place,
    distribution_strategy,
    dtype_policy,
    with_device_warp,
)
from poster_ml.models.progress import DivergenceGuard
from poster_ml.models.variants import Variant, build_model


@dataclasses.dataclass(frozen=True)
class TrainedVariant:
    variant: Variant
    model: keras.Model
    history: pd.DataFrame  # One row per epoch: loss, accuracy, auc, val_*, learning_rate, timing.
    seconds: float
    pretrained: bool
    # The values it trained with, for the logged model.
    hyperparameters: dict = dataclasses.field(default_factory=dict)
    diverged: str = ""  # Why a diverged training was stopped; empty if it did not diverge.

    @property
    def best_epoch(self) -> pd.Series:
        """The epoch whose weights the model kept: the best of the monitored metric."""
        return self.history.loc[self.history["restored"]].iloc[0]


class EpochTimer(keras.callbacks.Callback):
    """Adds epoch seconds and training images per second to each epoch's logs."""

    def __init__(self, images_per_epoch: int):
        super().__init__()
        self.images_per_epoch = images_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        logs["epoch_seconds"] = seconds
        logs["images_per_second"] = self.images_per_epoch / seconds
        logs["learning_rate"] = float(
            keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        )


def compile_model(model: keras.Model, variant: Variant, learning_rate: float | None = None) -> None:
    model.compile(
        optimizer=variant.make_optimizer(learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
        # XLA pays off on a GPU; on a CPU its compile time outweighs the gain.
        jit_compile="auto" if has_gpu() else False,
    )


def training_callbacks(
    config: TrainConfig, images_per_epoch: int
) -> list[keras.callbacks.Callback]:
    """The study's callbacks, fixed to watch validation metrics rather than training accuracy.
    Early stopping restores the best epoch's weights, so no checkpoint file is needed."""
    return [
        EpochTimer(images_per_epoch),
        keras.callbacks.EarlyStopping(
            monitor=config.monitor, patience=config.patience, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=config.lr_factor, patience=config.lr_patience
        ),
    ]


@dataclasses.dataclass(frozen=True)
class Fit:
    """One fit of a built model: what it trains on, with which settings (the batch and
    learning rate already scaled to the replicas), for how long, and with which callbacks."""

    model: keras.Model
    variant: Variant
    data: PreparedData
    config: TrainConfig
    augment: AugmentConfig
    epochs: int
    callbacks: list
    dropout: float
    first_epoch: int = 0


def train_variant(
    variant: Variant,
    data: PreparedData,
    config: TrainConfig,
    augment: AugmentConfig,
    extra_callbacks: list[keras.callbacks.Callback] | tuple = (),
    backup_dir: Path | None = None,
) -> TrainedVariant:
    """Trains one variant on the prepared data and returns the model with its best weights.

    `config.dropout`, `config.unfreeze_blocks` and `config.learning_rate` override the
    variant's own values when set. With `backup_dir`, every epoch's weights, optimiser
    state and history are kept there, and a training killed midway continues from its
    last finished epoch when called again with the same folder.
    """
    if variant.cached_features and config.unfreeze_blocks:
        raise ConfigError(
            f"unfreeze_blocks={config.unfreeze_blocks} cannot apply to {variant.name}: it trains its head on cached features of a frozen base"
        )
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    keras.config.set_dtype_policy(dtype_policy(config.precision))
    dropout, unfreeze_blocks = variant.resolve(config.dropout, config.unfreeze_blocks)
    model, config, replicas = built_for_replicas(variant, data, config, dropout, unfreeze_blocks)
    epochs = min(variant.epochs, config.max_epochs) if config.max_epochs else variant.epochs
    started = time.perf_counter()
    resuming, first_epoch = resume_callbacks(backup_dir, model)
    guard = DivergenceGuard()
    callbacks = [*resuming, guard, *extra_callbacks]
    fit = Fit(model, variant, data, config, augment, epochs, callbacks, dropout, first_epoch)
    with disk.writing(backup_dir) if backup_dir else contextlib.nullcontext():
        history = (
            fit_head_on_cached_features(fit) if variant.cached_features else fit_on_posters(fit)
        )
    # CSVLogger's file holds every epoch of every attempt, each with its 0-based number.
    logged = (
        pd.read_csv(backup_dir / "history.csv").drop_duplicates("epoch", keep="last")
        if backup_dir
        else pd.DataFrame(history.history).rename_axis("epoch").reset_index()
    )
    return TrainedVariant(
        variant,
        model,
        history_table(logged, config.monitor, first_epoch),
        time.perf_counter() - started,
        config.weights != "none" and variant.pretrained,
        hyperparameters(fit, replicas, unfreeze_blocks),
        guard.reason,
    )


def hyperparameters(fit: Fit, replicas: int, unfreeze_blocks: int) -> dict:
    """The values a model trained with, logged with it."""
    return {
        "dropout": fit.dropout,
        "learning_rate": fit.config.learning_rate,
        "optimizer": fit.variant.optimizer,
        "replicas": replicas,
        "unfreeze_blocks": unfreeze_blocks,
        "epochs": fit.epochs,
        "global_batch_size": fit.config.batch_size,
        "augment": fit.variant.augment,
        "weights": fit.config.weights,
        "image_size": fit.data.image_size,
        "seed": fit.config.seed,
    }


def built_for_replicas(
    variant: Variant, data: PreparedData, config: TrainConfig, dropout: float, unfreeze: int
) -> tuple[keras.Model, TrainConfig, int]:
    """The compiled model in the distribution strategy's scope, the config scaled to its
    replicas (each takes a batch of batch_size; the learning rate grows with the global
    batch), and the number of replicas."""
    strategy = distribution_strategy()
    replicas = strategy.num_replicas_in_sync
    learning_rate = (config.learning_rate or variant.learning_rate) * replicas
    config = dataclasses.replace(
        config, batch_size=config.batch_size * replicas, learning_rate=learning_rate
    )
    with strategy.scope():
        model = build_model(variant, data.image_size, dropout, unfreeze, config.weights)
        compile_model(model, variant, config.learning_rate)
    return model, config, replicas


def fit_on_posters(fit: Fit) -> keras.callbacks.History:
    """Trains the whole model on the posters, augmented on the host or on the device."""
    config, variant = fit.config, fit.variant
    place = augment_place(config.augment_on) if variant.augment else "host"
    train = image_batches(
        fit.data,
        "train",
        Streaming(
            config.batch_size,
            config.seed,
            fit.augment if variant.augment else None,
            shuffle=True,
            first_epoch=fit.first_epoch,
            augment_on=place,
        ),
    )
    validation = image_batches(
        fit.data, "validation", Streaming(config.batch_size, config.seed, augment_on=place)
    )
    fitted = with_device_warp(fit.model) if place == "device" else fit.model
    if fitted is not fit.model:
        compile_model(fitted, variant, config.learning_rate)
    return keras_fit(fitted, train, validation, fit, len(fit.data.split("train")))


def keras_fit(model, train, validation, fit: Fit, images_per_epoch: int):
    """Keras's fit with the study's callbacks and the fit's own. Keras prints nothing: the
    caller's callbacks say what a person watches (models/progress.py)."""
    return model.fit(
        train,
        validation_data=validation,
        epochs=fit.epochs,
        steps_per_epoch=fit.config.steps_per_epoch,
        callbacks=training_callbacks(fit.config, images_per_epoch) + fit.callbacks,
        shuffle=False,
        verbose=0,
    )


def resume_callbacks(
    backup_dir: Path | None, model: keras.Model
) -> tuple[list[keras.callbacks.Callback], int]:
    """Keras's BackupAndRestore (weights, optimiser state, epoch) and a CSV of every epoch's
    logs in `backup_dir`, and the epoch a resumed training starts from.

    The backup keeps the previous epoch's copy too (double_checkpoint): a write cut short by
    a full disk leaves a file that fails to load, and Keras falls back to the copy. The
    space for both is checked first (weights and Adam's two moments, twice)."""
    if backup_dir is None:
        return [], 0
    metadata = backup_dir / "backup" / "training_metadata.json"
    first_epoch = json.loads(metadata.read_text())["epoch"] if metadata.is_file() else 0
    backup_dir.mkdir(parents=True, exist_ok=True)
    disk.require_space(
        backup_dir, 2 * 3 * 4 * model.count_params() + 2**20, f"the epoch backup of {model.name}"
    )
    return [
        keras.callbacks.BackupAndRestore(str(backup_dir / "backup"), double_checkpoint=True),
        keras.callbacks.CSVLogger(str(backup_dir / "history.csv"), append=True),
    ], first_epoch


def history_table(table: pd.DataFrame, monitor: str, first_epoch: int = 0) -> pd.DataFrame:
    """One row per epoch. `restored` marks the epoch whose weights the model kept: the best
    of the monitored metric among the epochs early stopping saw (after a resume, those
    since the resume)."""
    table = table.sort_values("epoch").reset_index(drop=True)
    table["epoch"] = table["epoch"].astype(int) + 1  # 1-based, as people count epochs.
    seen = table[table["epoch"] > first_epoch]
    best = (
        seen[monitor].idxmax() if "auc" in monitor or "acc" in monitor else seen[monitor].idxmin()
    )
    table["restored"] = table.index == best
    return table


def fit_head_on_cached_features(fit: Fit) -> keras.callbacks.History:
    """Trains the head on the frozen base's features, then copies its weights into `model`.

    The base runs once per poster instead of once per poster per epoch (feature_cache.py).
    """
    model, variant, data, config = fit.model, fit.variant, fit.data, fit.config
    head_layer = model.get_layer("flatten")
    extractor = keras.Model(model.input, head_layer.input, name=f"{variant.base}_features")
    cache = feature_cache_dir(
        data, extractor, variant.base, config.weights, config.seed, config.feature_cache
    )
    readers = {
        split: cached_features(extractor, data, split, cache, config.batch_size)
        for split in ("train", "validation")
    }
    features = keras.Input(readers["train"].shape[1:], name="features")
    head = keras.Model(features, variant.head(features, fit.dropout), name=f"{variant.name}_head")
    compile_model(head, variant, config.learning_rate)
    train = streamed_batches(
        readers["train"],
        data.labels("train"),
        Streaming(config.batch_size, config.seed, shuffle=True, first_epoch=fit.first_epoch),
    )
    validation = streamed_batches(
        readers["validation"], data.labels("validation"), Streaming(config.batch_size, config.seed)
    )
    history = keras_fit(head, train, validation, fit, len(readers["train"]))
    for layer in head.layers:
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())
    return history
