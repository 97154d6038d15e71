"""Frozen configuration dataclasses, one per concern, and the strict override machinery.

Every field can be set from the command line and from MLproject parameters. An unknown
or mistyped setting is an error, never silently ignored.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

from poster_ml.errors import ConfigError

Config = TypeVar("Config")


def setting(default: Any, help: str) -> Any:
    """A dataclass field with the help text that the command line shows."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    source: str = setting("synthetic", "'synthetic', a labels CSV, or a folder with fresh/ and rotten/")
    images: str = setting("", "folder of poster files named in the labels CSV (CSV source only)")
    count: int = setting(1000, "number of synthetic posters (synthetic source only)")
    size: int = setting(224, "side of the square, stretched output images in pixels")
    out: str = setting("data/prepared", "output folder of the prepared dataset")
    seed: int = setting(42, "seed of the split and of the synthetic generator")
    train_fraction: float = setting(0.48, "share of posters in the training split")
    validation_fraction: float = setting(0.32, "share of posters in the validation split")
    test_fraction: float = setting(0.20, "share of posters in the untouched test split")
    label_noise: float = setting(0.15, "share of synthetic labels flipped at random")
    near_duplicate_bits: int = setting(4, "largest perceptual-hash distance (of 64 bits) for near duplicates")
    max_pixels: int = setting(40_000_000, "largest source pixel count; more is rejected as a decompression bomb")
    reduced_decode: bool = setting(True, "let JPEG decode at reduced size when the target is much smaller")
    workers: int = setting(0, "decoding processes; 0 uses every core")

    def __post_init__(self):
        fractions = (self.train_fraction, self.validation_fraction, self.test_fraction)
        if min(fractions) <= 0 or abs(sum(fractions) - 1.0) > 1e-6:
            raise ConfigError(f"split fractions must be positive and sum to 1, got {fractions}")
        if self.size < 8:
            raise ConfigError(f"size must be at least 8 pixels, got {self.size}")
        if self.count < 1:
            raise ConfigError(f"count must be at least 1, got {self.count}")


@dataclasses.dataclass(frozen=True)
class WorkflowConfig:
    source: str = setting("synthetic", "as for preprocess: 'synthetic', a labels CSV, or a class folder")
    images: str = setting("", "as for preprocess: the folder of posters named in a labels CSV")
    count: int = setting(1000, "as for preprocess: number of synthetic posters")
    data: str = setting("data/prepared", "folder of the prepared dataset")
    force: bool = setting(False, "rerun every step even when a finished run had the same inputs")


def field_types(config_class: type) -> dict[str, type]:
    return typing.get_type_hints(config_class)


def coerce(name: str, value: Any, target: type) -> Any:
    """Converts a command-line or MLproject string to the field's type, strictly."""
    if not isinstance(value, str):
        if target is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, target):
            return value
        raise ConfigError(f"setting {name!r} must be {target.__name__}, got {value!r}")
    if target is bool:
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"setting {name!r} must be true or false, got {value!r}")
    try:
        return target(value)
    except ValueError:
        raise ConfigError(f"setting {name!r} must be {target.__name__}, got {value!r}") from None


def with_overrides(config: Config, overrides: dict[str, Any]) -> Config:
    """Returns a copy of `config` with `overrides` applied; unknown names are an error."""
    types = field_types(type(config))
    unknown = sorted(set(overrides) - set(types))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(types)}")
    changes = {name: coerce(name, value, types[name]) for name, value in overrides.items()}
    return dataclasses.replace(config, **changes)


def parse_overrides(text: str) -> dict[str, str]:
    """Parses 'epochs=3 batch_size=16' (spaces or commas between) into a dict."""
    overrides = {}
    for item in text.replace(",", " ").split():
        name, separator, value = item.partition("=")
        if not separator or not name:
            raise ConfigError(f"override {item!r} is not of the form name=value")
        overrides[name.strip()] = value.strip()
    return overrides


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type) -> None:
    """Adds one --option per field, so the command line maps one to one onto the config."""
    for field in dataclasses.fields(config_class):
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            dest=field.name,
            default=None,
            metavar=field_types(config_class)[field.name].__name__.upper(),
            help=f"{field.metadata.get('help', '')} (default: {field.default})",
        )


def config_from_arguments(arguments: argparse.Namespace, config_class: type[Config]) -> Config:
    given = {
        field.name: getattr(arguments, field.name)
        for field in dataclasses.fields(config_class)
        if getattr(arguments, field.name, None) is not None
    }
    return with_overrides(config_class(), given)


def flatten(config: Any) -> dict[str, Any]:
    """The config as a flat dict of plain values, for logging as run parameters."""
    return dataclasses.asdict(config)
