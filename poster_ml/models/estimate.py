"""Which profile a train step runs, and how long a training will take on this machine,
from rates measured here before it starts: each variant's training step is timed on one
batch of the real posters, and the rates are multiplied by the epochs, trials and posters
the settings ask for."""

from __future__ import annotations

import dataclasses
import logging
import time

import keras
import numpy as np

from poster_ml.config import DEFAULT_DATA, PROFILES, TrainConfig, TrainStepConfig, chosen_profile
from poster_ml.data.prepared import PreparedData
from poster_ml.devices import has_gpu
from poster_ml.models.variants import Variant, build_model

log = logging.getLogger(__name__)

LONG_SECONDS = 3600.0
"""A training expected to take longer than this is announced with its estimate."""


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Seconds per variant, from each variant's measured seconds per training image."""

    seconds: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def line(self) -> str:
        """'this training will take about 9.4 h on this machine (...)'."""
        slowest = max(self.seconds, key=self.seconds.__getitem__)
        return (
            f"this training will take about {self.total / 3600:.1f} h on this machine, measured "
            f"on one batch of each variant ({slowest} the longest, {self.seconds[slowest] / 3600:.1f} h); "
            "on a CPU, the quick profile (--profile quick, -P profile=quick) takes minutes"
        )


def seconds_per_image(variant: Variant, data: PreparedData, batch_size: int) -> float:
    """One training step's seconds per image, timed on a second batch (the first traces)."""
    keras.backend.clear_session()
    model = build_model(variant, data.image_size, weights="none")
    model.compile(optimizer="adam", loss="binary_crossentropy")
    reader = data.reader("train")
    rows = np.arange(min(batch_size, len(reader)))
    images, labels = reader.read(rows).astype(np.float32), data.labels("train")[rows]
    model.train_on_batch(images, labels)
    started = time.perf_counter()
    model.train_on_batch(images, labels)
    seconds = (time.perf_counter() - started) / len(rows)
    keras.backend.clear_session()
    return seconds


def estimate(variants: list[Variant], data: PreparedData, config: TrainConfig) -> Estimate:
    """The training's seconds per variant: every epoch over the training and validation
    posters, every trial (at least one), at the rate measured here. A cached-features
    variant runs its base once per poster and is counted so."""
    posters = len(data.split("train")) + len(data.split("validation"))
    trials = max(config.trials, 1)
    seconds = {}
    for variant in variants:
        rate = seconds_per_image(variant, data, config.batch_size)
        epochs = min(variant.epochs, config.max_epochs) if config.max_epochs else variant.epochs
        passes = 1 if variant.cached_features else epochs * trials
        seconds[variant.name] = rate * posters * passes
    return Estimate(seconds)


def resolved_profile(step: TrainStepConfig) -> TrainStepConfig:
    """The step with its profile chosen: 'auto' (the default) is the study's full profile
    where a GPU is and the quick one elsewhere, said in the step's first line."""
    if step.profile != "auto":
        return step
    profile = chosen_profile(step.profile, has_gpu())
    if profile == "full":
        log.info("profile auto: a GPU is here, so the full profile (the study's settings)")
    else:
        data = DEFAULT_DATA["quick"]
        log.info(
            f"profile auto: no GPU here, so the quick profile ({data['count']} synthetic posters "
            f"at {data['size']} px unless --data names yours, at most "
            f"{PROFILES['quick']['max_epochs']} epochs, minutes on a laptop); --profile full "
            "(-P profile=full) trains the study's settings, for hours on a CPU"
        )
    return dataclasses.replace(step, profile=profile)


def announce_long_training(
    variants: list[Variant], data: PreparedData, config: TrainConfig, profile: str
) -> None:
    """The full profile on a machine without a GPU times one batch of each variant first,
    and says so before it starts when the training would take longer than LONG_SECONDS."""
    if profile != "full" or has_gpu():
        return
    expected = estimate(variants, data, config)
    if expected.total > LONG_SECONDS:
        log.warning(expected.line())
