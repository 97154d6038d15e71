"""What a training says while it runs: a progress bar over its epochs on a terminal, every
epoch's figures at DEBUG (`--verbose`), and one line at the end. The figures themselves go
to MLflow through the epoch logger; this is only what a person watches."""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import TYPE_CHECKING

import keras
from tqdm.auto import tqdm

if TYPE_CHECKING:  # fit.py imports this module.
    from poster_ml.models.fit import TrainedVariant

log = logging.getLogger(__name__)


class EpochProgress(keras.callbacks.Callback):
    """Replaces Keras's own epoch lines (`verbose=2`): a tqdm bar named `label` (shown only
    on a terminal, as tqdm decides) and the epoch's logs at DEBUG. When the model is
    trained, `summary` is its one INFO line: the epochs it ran, its time, and the epoch it
    kept with that epoch's exact validation AUC (the bar shows Keras's approximate one)."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label
        self.first_epoch, self.last_epoch = 0, 0  # 1-based; 0 until an epoch ends.
        self.started = time.perf_counter()
        self.bar: tqdm | None = None

    def on_train_begin(self, logs=None) -> None:
        self.started = time.perf_counter()
        self.bar = tqdm(
            total=self.params.get("epochs"),
            desc=self.label,
            unit="epoch",
            disable=None,  # Off where the output is not a terminal (a log file, CI).
            leave=False,
            file=sys.stderr,
        )

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        # A resumed training (BackupAndRestore) starts past the first epoch.
        self.first_epoch = self.first_epoch or epoch + 1
        self.last_epoch = epoch + 1
        log.debug(
            f"{self.label} epoch {epoch + 1}/{self.params.get('epochs')}: "
            + ", ".join(f"{name} {float(number):.4g}" for name, number in logs.items())
        )
        if self.bar is not None:
            self.bar.update(1)
            if "val_auc" in logs:
                self.bar.set_postfix({"val_auc": f"{float(logs['val_auc']):.3f}"})

    def on_train_end(self, logs=None) -> None:
        if self.bar is not None:
            self.bar.close()

    def summary(self, trained: TrainedVariant) -> str:
        """'basic_cnn: epochs 1-6 of 6 in 41 s; kept epoch 5 of 6: validation AUC 0.812'."""
        seconds = time.perf_counter() - self.started
        return (
            f"{self.label}: epochs {self.first_epoch}-{self.last_epoch} of "
            f"{self.params.get('epochs')} in {seconds:.0f} s; kept epoch "
            f"{int(trained.kept_epoch['epoch'])} of {self.last_epoch}: validation AUC "
            f"{trained.validation_auc:.3f}"
        )


DIVERGENCE_FACTOR = 10.0
"""A training loss this many times its first epoch's has diverged: a binary cross-entropy
starts near 0.69, and one above 6.9 means confident answers that are mostly wrong."""


class DivergenceGuard(keras.callbacks.Callback):
    """Stops a training whose loss turns non-finite (checked every batch) or grows past
    DIVERGENCE_FACTOR times its first epoch's (checked every epoch), and keeps the reason;
    `reason` is empty for a training that did not diverge."""

    def __init__(self, factor: float | None = None) -> None:
        super().__init__()
        self.factor, self.reason, self.epoch = factor or DIVERGENCE_FACTOR, "", 0
        self.first_loss: float | None = None

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.stop(f"the training loss became {float(loss)} in epoch {self.epoch + 1}")

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or self.reason:
            return
        loss = float(loss)
        if not math.isfinite(loss):
            self.stop(f"the training loss became {loss} in epoch {epoch + 1}")
        elif self.first_loss is None:
            self.first_loss = loss
        elif loss > self.factor * self.first_loss:
            self.stop(
                f"the training loss reached {loss:.3g} in epoch {epoch + 1}, over "
                f"{self.factor:g} times the first epoch's {self.first_loss:.3g}"
            )

    def stop(self, reason: str) -> None:
        self.reason = self.reason or reason
        self.model.stop_training = True
        log.warning(f"diverged: {reason}; training stopped")
