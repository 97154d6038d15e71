"""Frozen configuration dataclasses, one per concern, and the training profiles.

Every field can be set from the command line and from MLproject parameters (the strict
machinery is in settings.py). MLproject's parameters are checked against these classes
by a test.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from poster_ml.config.settings import Checked, at_least, between, one_of, setting, with_overrides
from poster_ml.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class PreprocessConfig(Checked):
    source: str = setting(
        "synthetic", "'synthetic', a labels CSV, or a folder with fresh/ and rotten/"
    )
    images: str = setting("", "folder of poster files named in the labels CSV (CSV source only)")
    count: int = setting(1000, "number of synthetic posters (synthetic source only)", at_least(1))
    size: int = setting(
        224, "side of the square, stretched output images in pixels", between(8, 4096)
    )
    out: str = setting("data/prepared", "output folder of the prepared dataset")
    seed: int = setting(
        42, "seed of the split and of the synthetic generator", between(0, 2**32 - 1)
    )
    train_fraction: float = setting(
        0.48, "share of posters in the training split", between(0, 1, low_open=True, high_open=True)
    )
    validation_fraction: float = setting(
        0.32,
        "share of posters in the validation split",
        between(0, 1, low_open=True, high_open=True),
    )
    test_fraction: float = setting(
        0.20,
        "share of posters in the untouched test split",
        between(0, 1, low_open=True, high_open=True),
    )
    label_noise: float = setting(
        0.15, "share of synthetic labels flipped at random", between(0, 0.5, high_open=True)
    )
    near_duplicate_bits: int = setting(
        10,
        "largest difference-hash distance (of 64 bits) of near-duplicate candidates",
        between(0, 64),
    )
    near_duplicate_difference: float = setting(
        2.0,
        "largest mean grey-level difference of 16 x 16 thumbnails that confirms a near duplicate",
        between(0, 255),
    )
    max_pixels: int = setting(
        40_000_000,
        "largest source pixel count; more is rejected as a decompression bomb",
        at_least(1),
    )
    reduced_decode: bool = setting(
        True, "let JPEG decode at reduced size when the target is much smaller"
    )
    workers: int = setting(
        0, "decoding and annotating processes; 0 uses every core", between(0, 256)
    )
    annotate: bool = setting(
        True, "detect each poster's text and faces and measure its design attributes"
    )
    annotation_timeout: float = setting(
        10.0, "seconds one poster's detectors may take; 0 sets no limit", between(0, 3600)
    )
    log_data: str = setting(
        "auto",
        "log the prepared dataset with the run, for --data runs:/<run id>/prepared elsewhere; "
        "'auto' does when tracking goes to a server",
        one_of("auto", "true", "false"),
    )

    def __post_init__(self):
        super().__post_init__()
        fractions = (self.train_fraction, self.validation_fraction, self.test_fraction)
        if abs(sum(fractions) - 1.0) > 1e-6:
            raise ConfigError(f"split fractions must sum to 1, got {fractions}")


@dataclasses.dataclass(frozen=True)
class TrainStepConfig(Checked):
    """What the train step's command line and MLproject entry point take."""

    profile: str = setting(
        "auto",
        "'full' (the study's settings), 'quick' (a 2-core laptop, minutes), or 'auto': full where a GPU is, else quick",
        one_of("auto", "full", "quick"),
    )
    data: str = setting(
        "data/prepared",
        "prepared dataset: a folder (at the default one, missing, a preprocess run prepares "
        "the profile's synthetic default there first), "
        "runs:/<preprocess run id>/prepared, or 'latest' (the newest logged by preprocess)",
    )
    variants: str = setting("all", "comma-separated variant names, or 'all'")
    overrides: str = setting(
        "", "settings as 'name=value ...', e.g. 'max_epochs=3 weights=none zoom=0.2'"
    )
    trials: int = setting(
        -1,
        "Optuna trials per variant; -1 takes the profile's (quick 3, full 20), 0 trains the study's values once",
        between(-1, 10_000),
    )
    storage: str = setting(
        "",
        "Optuna study storage: empty is optuna.db beside the MLflow store; journal:PATH or postgresql+psycopg://... for several workers",
    )
    study_name: str = setting(
        "",
        "Optuna study name; empty derives it from the experiment, the variant and the data digest",
    )
    heartbeat: int = setting(
        60,
        "seconds between a tuning worker's heartbeats; a trial silent for twice as long is failed and retried",
        between(1, 3600),
    )
    restart: bool = setting(
        False, "start afresh instead of resuming an interrupted train run with the same settings"
    )


@dataclasses.dataclass(frozen=True)
class EvaluateConfig(Checked):
    train_run: str = setting("latest", "train run whose variants to evaluate: a run id or 'latest'")
    model_uri: str = setting(
        "", "evaluate this one model instead (e.g. models:/poster-ml@champion)"
    )
    data: str = setting(
        "",
        "prepared dataset (a folder, runs:/<run id>/prepared or 'latest'); empty means the one the train run used",
    )
    bootstrap_samples: int = setting(
        1000, "bootstrap resamples for the 95 % intervals", between(10, 1_000_000)
    )
    seed: int = setting(42, "seed of the bootstrap", between(0, 2**32 - 1))
    cam_posters: int = setting(8, "posters in each class-activation-map grid", between(1, 64))
    faithfulness_posters: int = setting(
        8,
        "most confident posters (half of each class) for deletion, insertion and occlusion; 0 skips them",
        between(0, 512),
    )
    activations_variant: str = setting(
        "inception_v3_finetune_aug", "variant whose intermediate activations are drawn"
    )
    restart: bool = setting(
        False, "start afresh instead of resuming an interrupted evaluate run with the same settings"
    )


@dataclasses.dataclass(frozen=True)
class RegisterConfig(Checked):
    train_run: str = setting(
        "latest",
        "train run whose best variant (by validation AUC) to register: a run id or 'latest'",
    )
    model_name: str = setting("poster-ml", "registered model name")
    allow_cpu: bool = setting(
        False, "register a CPU-trained variant too (by default only GPU-trained ones)"
    )
    data: str = setting(
        "",
        "prepared dataset whose test split gates the model (a folder, runs:/<run id>/prepared "
        "or 'latest'); empty means the one the train run used",
    )
    bootstrap_samples: int = setting(
        1000,
        "paired bootstrap resamples of the comparison with the current champion",
        between(10, 1_000_000),
    )
    seed: int = setting(42, "seed of the paired bootstrap", between(0, 2**32 - 1))


@dataclasses.dataclass(frozen=True)
class WorkflowConfig(Checked):
    profile: str = setting(
        "quick",
        "training profile: 'quick' (a laptop, minutes) or 'full' (the study's settings)",
        one_of("full", "quick"),
    )
    source: str = setting(
        "synthetic", "as for preprocess: 'synthetic', a labels CSV, or a class folder"
    )
    images: str = setting("", "as for preprocess: the folder of posters named in a labels CSV")
    count: int = setting(400, "as for preprocess: number of synthetic posters", at_least(1))
    size: int = setting(
        0,
        "as for preprocess: side of the output images; 0 takes the profile's (quick 75, full 224)",
        between(0, 4096),
    )
    data: str = setting("data/prepared", "folder of the prepared dataset")
    variants: str = setting("all", "as for train: comma-separated variant names, or 'all'")
    overrides: str = setting("", "as for train: settings as 'name=value ...'")
    trials: int = setting(
        -1, "as for train: Optuna trials per variant; -1 takes the profile's", between(-1, 10_000)
    )
    allow_cpu: str = setting(
        "auto",
        "as for register; 'auto' allows CPU-trained variants on a machine without a GPU and says so",
        one_of("auto", "true", "false"),
    )
    force: bool = setting(False, "rerun every step even when a finished run had the same inputs")


@dataclasses.dataclass(frozen=True)
class AugmentConfig(Checked):
    """The study's augmentation, applied as one fused affine warp per image."""

    rotation_degrees: float = setting(50.0, "largest random rotation, degrees", between(0, 180))
    zoom: float = setting(
        0.3, "random zoom in [1 - zoom, 1 + zoom] per axis", between(0, 1, high_open=True)
    )
    width_shift: float = setting(
        0.2, "largest horizontal shift, as a share of the width", between(0, 1, high_open=True)
    )
    height_shift: float = setting(
        0.2, "largest vertical shift, as a share of the height", between(0, 1, high_open=True)
    )
    shear_degrees: float = setting(
        0.2, "largest shear angle in degrees (the study's ImageDataGenerator unit)", between(0, 89)
    )
    horizontal_flip: bool = setting(True, "flip half of the images left to right")


@dataclasses.dataclass(frozen=True)
class TrainConfig(Checked):
    """Training settings; PROFILES hold the two starting points, `full` and `quick`."""

    batch_size: int = setting(32, "images per batch", between(1, 4096))
    max_epochs: int = setting(
        0, "cap on each variant's epochs from the study; 0 keeps them", between(0, 10_000)
    )
    patience: int = setting(
        5, "epochs without improvement of the monitored metric before early stopping", at_least(1)
    )
    monitor: str = setting(
        "val_loss",
        "validation metric that early stopping and checkpointing watch",
        one_of("val_loss", "val_auc", "val_accuracy"),
    )
    lr_patience: int = setting(
        3, "epochs without improvement of val_loss before the learning rate drops", at_least(1)
    )
    lr_factor: float = setting(
        0.1, "factor of each learning-rate drop", between(0, 1, low_open=True, high_open=True)
    )
    weights: str = setting(
        "imagenet",
        "pretrained bases: 'imagenet', 'auto' (ImageNet where it can be had, else random), 'none', or a weights file",
    )
    dropout: float | None = setting(
        None,
        "dropout rate of every head; none keeps each variant's own",
        between(0, 1, high_open=True),
    )
    learning_rate: float | None = setting(
        None, "learning rate; none keeps each variant's own", between(0, 1, low_open=True)
    )
    unfreeze_blocks: int | None = setting(
        None,
        "top blocks of a pretrained base that train; none keeps each variant's own",
        between(0, 100),
    )
    steps_per_epoch: int | None = setting(
        None, "batches per epoch; none is the whole training split", at_least(1)
    )
    seed: int = setting(42, "seed of weights, shuffling and augmentation", between(0, 2**32 - 1))
    precision: str = setting(
        "auto",
        "Keras dtype policy: auto (mixed_float16 on a GPU, float32 on a CPU), float32, mixed_float16 or mixed_bfloat16",
        one_of("auto", "float32", "mixed_float16", "mixed_bfloat16"),
    )
    augment_on: str = setting(
        "auto",
        "where augmentation warps: auto (device when a GPU is visible), host (OpenCV on every core) or device (in the training step)",
        one_of("auto", "host", "device"),
    )
    feature_cache: str = setting("", "folder of cached base features; empty means <data>/features")
    trials: int = setting(
        20, "Optuna trials per variant; 0 trains the study's values once", between(0, 10_000)
    )
    pruner: str = setting(
        "median",
        "Optuna pruner of unpromising trials: median, hyperband or none",
        one_of("median", "hyperband", "none"),
    )
    startup_trials: int = setting(
        -1,
        "trials TPE draws at random before it models the search space; -1 is a third of the trials (at least 1)",
        between(-1, 10_000),
    )


PROFILES: dict[str, dict[str, Any]] = {
    "full": {},
    # A 2-core laptop trains all eight variants in minutes, offline.
    "quick": {
        "max_epochs": 4,
        "weights": "auto",
        "patience": 2,
        "lr_patience": 2,
        "trials": 3,
    },
}


# The synthetic default that each profile's preprocess makes, in main and when train finds
# no prepared data at its default location.
DEFAULT_DATA: dict[str, dict[str, int]] = {
    "full": {"size": 224, "count": 2000},
    "quick": {"size": 75, "count": 400},
}


def chosen_profile(profile: str, gpu: bool) -> str:
    """The profile a train step runs: 'auto' is the full one where a GPU is, else quick."""
    if profile != "auto":
        return profile
    return "full" if gpu else "quick"


def train_config(profile: str, overrides: dict[str, Any]) -> TrainConfig:
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    return with_overrides(TrainConfig(), {**PROFILES[profile], **overrides})
