"""Optuna studies as sets of settings: a study's identity and name, opening one (to create,
resume or join it), and saying how two studies of a variant differ.

A study holds trials of one variant trained under one set of settings. Everything that
changes what a trial trains is part of its identity: the dataset digest, the variant's
resolved values (after weights are resolved), the training settings, the augmentation
a variant with augmentation uses, and the bounds of the search space. The trial budget
is not: asking for more trials adds them to the same study.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import time
from typing import TYPE_CHECKING, Any

import optuna

from poster_ml.config import AugmentConfig, TrainConfig
from poster_ml.errors import ConfigError
from poster_ml.models.tuning import finished_trials, make_pruner, search_space, study_values

if TYPE_CHECKING:
    from poster_ml.models.variants import Variant

SETTINGS_ATTRIBUTE, HASH_ATTRIBUTE, VARIANT_ATTRIBUTE = "settings", "settings_hash", "variant"

NOT_IDENTITY = ("trials", "feature_cache", "startup_trials")
"""Training settings outside a study's identity: the trial budget and where cached
features live."""


def study_settings(
    variant: Variant, config: TrainConfig, augment: AugmentConfig, dataset_digest: str
) -> dict[str, Any]:
    """Every setting that changes what a trial of this variant trains, as plain JSON values."""
    described = {
        field.name: getattr(variant, field.name)
        for field in dataclasses.fields(variant)
        if field.name not in ("head", "description")
    }
    # The search space's bounds, read off a throwaway trial: the one function stays the truth.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial = optuna.create_study(storage=optuna.storages.InMemoryStorage()).ask()
    search_space(trial, variant)
    bounds = {
        name: json.loads(optuna.distributions.distribution_to_json(distribution))
        for name, distribution in sorted(trial.distributions.items())
    }
    return {
        "dataset_digest": dataset_digest,
        "variant": described,
        "train": {
            name: value
            for name, value in dataclasses.asdict(config).items()
            if name not in NOT_IDENTITY
        },
        "augment": dataclasses.asdict(augment) if variant.augment else None,
        "search_space": bounds,
    }


def settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[
        :12
    ]


def study_name(experiment: str, variant: str, settings: dict[str, Any]) -> str:
    return f"{experiment}.{variant}.{settings_hash(settings)}"


def flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as 'train.max_epochs'-style keys."""
    items: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            items |= flat(value, f"{prefix}{key}.")
        else:
            items[f"{prefix}{key}"] = value
    return items


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed between two studies' settings, as 'name: old -> new' lines."""
    before, after = flat(old), flat(new)
    return [
        f"{key}: {before.get(key)} -> {after.get(key)}"
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    ]


def startup_trials(setting: int, trials: int) -> int:
    """TPE's random start-up trials: the setting, or with -1 a third of the budget (at least
    one), so that the model-based search starts within the first third of the trials.
    Optuna's own default, 10, would leave a 3- or 20-trial study random or half random."""
    return setting if setting >= 0 else max(1, trials // 3)


def open_study(
    name: str, storage, seed: int, pruner: str, variant: Variant, settings: dict, startup: int = 10
) -> tuple[optuna.Study, bool]:
    """Creates the study, or loads it to resume or to join other workers; returns it and
    whether this process created it. A new study records its settings and starts with the
    study's values; an existing one must have been made with the same settings."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    options = {
        "study_name": name,
        "storage": storage,
        "sampler": optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup),
        "pruner": make_pruner(pruner),
    }
    try:
        study = optuna.create_study(direction="maximize", **options)
    except optuna.exceptions.DuplicatedStudyError:
        return joined_study(options, settings), False
    study.set_user_attr(VARIANT_ATTRIBUTE, variant.name)
    study.set_user_attr(HASH_ATTRIBUTE, settings_hash(settings))
    study.set_user_attr(SETTINGS_ATTRIBUTE, settings)
    study.enqueue_trial(study_values(variant))
    return study, True


def joined_study(options: dict, settings: dict) -> optuna.Study:
    """An existing study, which must have been made with the same settings."""
    study = optuna.load_study(**options)
    recorded = wait_for_attribute(study, SETTINGS_ATTRIBUTE)
    if recorded is not None and recorded != settings:
        changed = "; ".join(differences(recorded, settings)[:5])
        raise ConfigError(
            f"study {study.study_name} was made with other settings ({changed}); "
            "use the same settings, or another --study-name"
        )
    return study


def opening_line(study: optuna.Study, created: bool, storage, settings: dict) -> str:
    """One line on what this run does with the study: resumes it, or starts a new one
    and says which settings differ from the variant's latest study."""
    variant = study.user_attrs.get(VARIANT_ATTRIBUTE)
    if not created:
        return f"{variant}: resuming study {study.study_name} (same settings, {finished_trials(study)} finished trials)"
    others = [
        summary
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False)
        if summary.study_name != study.study_name
        and summary.user_attrs.get(VARIANT_ATTRIBUTE) == variant
        and SETTINGS_ATTRIBUTE in summary.user_attrs
    ]
    if not others:
        return f"{variant}: new study {study.study_name}"
    # Studies of the same experiment first: the names begin `<experiment>.<variant>.`.
    prefix = study.study_name.rsplit(".", 2)[0] + "."
    nearest = [summary for summary in others if summary.study_name.startswith(prefix)] or others
    latest = max(nearest, key=lambda summary: summary.datetime_start or datetime.datetime.min)
    changed = differences(latest.user_attrs[SETTINGS_ATTRIBUTE], settings)
    if not changed:
        return f"{variant}: new study {study.study_name}, with the same settings as study {latest.study_name} under another name (another experiment, or --study-name)"
    return f"{variant}: new study {study.study_name}, since settings differ from study {latest.study_name}: {'; '.join(changed[:5])}"


def wait_for_attribute(study: optuna.Study, key: str, wait_seconds: float = 30.0):
    """A study user attribute that the worker that created the study sets right after
    creating it (another worker may be a moment behind); None if it never comes."""
    deadline = time.monotonic() + wait_seconds
    while True:
        value = study.user_attrs.get(key)
        if value is not None or time.monotonic() > deadline:
            return value
        time.sleep(0.5)
