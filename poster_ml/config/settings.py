"""The strict settings machinery shared by every config: fields with help text, typed
coercion of command-line and MLproject strings, overrides, and argparse options.

An unknown or mistyped setting is an error, never silently ignored.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, ClassVar, TypeVar

from poster_ml.errors import ConfigError

Config = TypeVar("Config", bound="Checked")


@dataclasses.dataclass(frozen=True)
class Allowed:
    """The values a setting admits: a range (either end open or closed) or a set of choices."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()

    def admits(self, value: Any) -> bool:
        if self.choices:
            return value in self.choices
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        low = (
            None
            if self.low is None
            else f"{'above' if self.low_open else 'at least'} {_number(self.low)}"
        )
        high = (
            None
            if self.high is None
            else f"{'below' if self.high_open else 'at most'} {_number(self.high)}"
        )
        return " and ".join(part for part in (low, high) if part)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def at_least(low: float) -> Allowed:
    return Allowed(low=low)


def between(low: float, high: float, low_open: bool = False, high_open: bool = False) -> Allowed:
    return Allowed(low=low, high=high, low_open=low_open, high_open=high_open)


def one_of(*choices: Any) -> Allowed:
    return Allowed(choices=choices)


def setting(default: Any, help: str, allowed: Allowed | None = None) -> Any:
    """A dataclass field with the help text that the command line shows and, where the
    setting has one, the range or set of values it admits."""
    return dataclasses.field(default=default, metadata={"help": help, "allowed": allowed})


class Checked:
    """Mixin for config dataclasses: every value is checked against its field's allowed
    range when the config is made, so a bad setting stops a step before any work."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field]]  # Every subclass is a dataclass.

    def __post_init__(self):
        for field in dataclasses.fields(self):
            allowed, value = field.metadata.get("allowed"), getattr(self, field.name)
            if allowed is not None and value is not None and not allowed.admits(value):
                raise ConfigError(
                    f"setting {field.name}={value!r} is not allowed: it must be {allowed}"
                )


def split_overrides(overrides: dict[str, Any], *config_classes: type) -> list[dict[str, Any]]:
    """Routes each override to the config class that has the setting; unknown ones are an error."""
    routed: list[dict[str, Any]] = [{} for _ in config_classes]
    for name, value in overrides.items():
        owner = next(
            (index for index, cls in enumerate(config_classes) if name in field_types(cls)), None
        )
        if owner is None:
            known = ", ".join(name for cls in config_classes for name in field_types(cls))
            raise ConfigError(f"unknown setting {name!r}; known: {known}")
        routed[owner][name] = value
    return routed


def field_types(config_class: type) -> dict[str, type]:
    """Each setting's type (the dataclass fields only, not the class variables)."""
    hints = typing.get_type_hints(config_class)
    return {field.name: hints[field.name] for field in dataclasses.fields(config_class)}


def coerce(name: str, value: Any, target: Any) -> Any:
    """Converts a command-line or MLproject string to the field's type, strictly."""
    if typing.get_origin(target) in (typing.Union, types.UnionType):
        # Optional settings: 'none' (or nothing) means unset.
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        target = next(option for option in typing.get_args(target) if option is not type(None))
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
            metavar=field.name.upper(),
            # argparse expands %-formats in help text, so a literal percent sign is doubled.
            help=f"{field.metadata.get('help', '')} ({allowed_text(field)}default: {field.default})".replace(
                "%", "%%"
            ),
        )


def allowed_text(field: dataclasses.Field) -> str:
    allowed = field.metadata.get("allowed")
    return f"{allowed}; " if allowed is not None else ""


def config_from_arguments(arguments: argparse.Namespace, config_class: type[Config]) -> Config:
    given = {
        field.name: getattr(arguments, field.name)
        for field in dataclasses.fields(config_class)
        if getattr(arguments, field.name, None) is not None
    }
    return with_overrides(config_class(), given)
