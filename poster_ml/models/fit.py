"""Training one variant: model, callbacks that watch validation metrics, the feature cache."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path

import keras
import numpy as np
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
from poster_ml.models.predict import predict_rows
from poster_ml.models.progress import DivergenceGuard
from poster_ml.models.variants import Variant, build_model, head_first_layer


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
    # The kept weights on the validation split: exact AUC and accuracy with intervals, the
    # majority class's share and the answers' spread (evaluation.metrics.ranking_figures).
    validation: dict = dataclasses.field(default_factory=dict)

    @property
    def kept_epoch(self) -> pd.Series:
        """The history row of the epoch whose weights the model kept (early stopping's)."""
        return self.history.loc[self.history["restored"]].iloc[0]

    @property
    def validation_auc(self) -> float:
        """The exact validation ROC AUC of the kept weights: what selects a model."""
        return float(self.validation["roc_auc"])


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


def training_callbacks(fit: Fit, images_per_epoch: int) -> list[keras.callbacks.Callback]:
    """The study's callbacks, fixed to watch validation metrics rather than training accuracy:
    the fit's early stopping (which restores the best epoch's weights, so no checkpoint file
    is needed) and the learning-rate drops."""
    return [
        EpochTimer(images_per_epoch),
        fit.early_stopping,
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=fit.config.lr_factor, patience=fit.config.lr_patience
        ),
    ]


def early_stopping(config: TrainConfig) -> keras.callbacks.EarlyStopping:
    """Early stopping on `config.monitor` (val_loss by default: docs/decisions.md says why),
    restoring the best epoch's weights. Its `best_epoch` is the one place the kept epoch is
    known: every figure of a trained model is that epoch's."""
    return keras.callbacks.EarlyStopping(
        monitor=config.monitor, patience=config.patience, restore_best_weights=True
    )


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
    early_stopping: keras.callbacks.EarlyStopping
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
    # A fresh Keras state names the layers alike in every training. The memory of the one
    # before is freed by whoever ran it (models/session.py), so no garbage collection here.
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(config.seed)
    keras.config.set_dtype_policy(dtype_policy(config.precision))
    dropout, unfreeze_blocks = variant.resolve(config.dropout, config.unfreeze_blocks)
    model, config, replicas = built_for_replicas(variant, data, config, dropout, unfreeze_blocks)
    epochs = min(variant.epochs, config.max_epochs) if config.max_epochs else variant.epochs
    started = time.perf_counter()
    resuming, first_epoch = resume_callbacks(backup_dir, model)
    guard = DivergenceGuard()
    callbacks = [*resuming, guard, *extra_callbacks]
    stop = early_stopping(config)
    fit = Fit(model, variant, data, config, augment, epochs, callbacks, dropout, stop, first_epoch)
    with disk.writing(backup_dir) if backup_dir else contextlib.nullcontext():
        history, validation_scores = (
            fit_head_on_cached_features(fit) if variant.cached_features else fit_on_posters(fit)
        )
    logged = epochs_logged(history, backup_dir)
    return TrainedVariant(
        variant,
        model,
        history_table(logged, kept_epoch(fit.early_stopping, logged)),
        time.perf_counter() - started,
        config.weights != "none" and variant.pretrained,
        hyperparameters(fit, replicas, unfreeze_blocks),
        guard.reason,
        validation_figures(data, validation_scores),
    )


def epochs_logged(history: keras.callbacks.History, backup_dir: Path | None) -> pd.DataFrame:
    """Every epoch's logs, numbered from 0. With a backup, CSVLogger's file holds every
    epoch of every attempt (a resumed training's too): the last of each counts."""
    if backup_dir is None:
        return pd.DataFrame(history.history).rename_axis("epoch").reset_index()
    return pd.read_csv(backup_dir / "history.csv").drop_duplicates("epoch", keep="last")


def kept_epoch(stopping: keras.callbacks.EarlyStopping, logged: pd.DataFrame) -> int:
    """The 0-based epoch whose weights early stopping restored. A fit that ran no epoch (a
    resumed training whose epochs were all done) kept the last one's weights."""
    if stopping.best is None:
        return int(logged["epoch"].max())
    return int(stopping.best_epoch)


def validation_figures(data: PreparedData, probabilities: np.ndarray) -> dict:
    """The kept weights' exact figures on the validation split (evaluation/metrics.py)."""
    from poster_ml.evaluation.metrics import ranking_figures

    majority = int(np.bincount(data.labels("train").astype(int), minlength=2).argmax())
    return ranking_figures(data.labels("validation"), probabilities, majority)


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


def fit_on_posters(fit: Fit) -> tuple[keras.callbacks.History, np.ndarray]:
    """Trains the whole model on the posters, augmented on the host or on the device, and
    scores the validation posters with the kept weights."""
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
    history = keras_fit(fitted, train, validation, fit, len(fit.data.split("train")))
    return history, predict_rows(fit.model, fit.data.reader("validation"))


def keras_fit(model, train, validation, fit: Fit, images_per_epoch: int):
    """Keras's fit with the study's callbacks and the fit's own. Keras prints nothing: the
    caller's callbacks say what a person watches (models/progress.py)."""
    return model.fit(
        train,
        validation_data=validation,
        epochs=fit.epochs,
        steps_per_epoch=fit.config.steps_per_epoch,
        callbacks=training_callbacks(fit, images_per_epoch) + fit.callbacks,
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


def history_table(table: pd.DataFrame, kept: int) -> pd.DataFrame:
    """One row per epoch, numbered from 1 as people count epochs; `restored` marks the
    epoch whose weights the model kept (`kept`, 0-based as Keras counts)."""
    table = table.sort_values("epoch").reset_index(drop=True)
    table["restored"] = table["epoch"].astype(int) == kept
    table["epoch"] = table["epoch"].astype(int) + 1
    return table


def fit_head_on_cached_features(fit: Fit) -> tuple[keras.callbacks.History, np.ndarray]:
    """Trains the head on the frozen base's features, then copies its weights into `model`;
    the head scores the cached validation features with the kept weights.

    The base runs once per poster instead of once per poster per epoch (feature_cache.py).
    """
    model, variant, data, config = fit.model, fit.variant, fit.data, fit.config
    head_layer = head_first_layer(model)
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
    return history, predict_rows(head, readers["validation"])
