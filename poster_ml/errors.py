"""Errors that stop a step with a one-line message and a non-zero exit, never a traceback."""


class PosterMLError(ValueError):
    """Base of every expected, user-facing error."""


class ConfigError(PosterMLError):
    """An unknown, mistyped or inconsistent setting."""


class DatasetError(PosterMLError):
    """A fatal input problem: no such CSV, no label column, nothing accepted."""


class ModelLoadError(PosterMLError):
    """A logged model that cannot be found, downloaded or loaded."""


class WeightsUnavailableError(PosterMLError):
    """Pretrained weights were asked for and cannot be had."""


class TrackingStoreError(PosterMLError):
    """The tracking store cannot be reached, refuses the credentials, or lacks a run."""


def first_line(message: object, limit: int | None = None) -> str:
    """The first line of an error's message (or of any text), at most `limit` characters;
    an empty message gives the error's type name."""
    text = str(message).strip()
    line = text.splitlines()[0] if text else type(message).__name__
    return line[:limit] if limit else line


class DiskFullError(PosterMLError):
    """A write would not fit, or did not: the path, the space needed and what is free."""
