"""What a run prints. The package reports through the `poster_ml` logger (each module's
`logging.getLogger(__name__)`): by default at INFO, what a person acts on (the step and its
run link, one line per variant and per trial, the decision, where the report is); at DEBUG,
with `--verbose`, the full tables and every epoch too; with `--quiet`, warnings and errors
only. TensorFlow's start-up notes, CUDA probes on a machine without a GPU, MLflow's INFO
logs and artifact-download progress bars are held back unless verbose. The choice reaches
the steps `main` starts through POSTER_ML_VERBOSE=1 or POSTER_ML_QUIET=1.

Code that embeds a step sets the `poster_ml` logger as it likes: without a handler of its
own only warnings reach Python's last-resort handler, as for any library.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

VERBOSE_VARIABLE = "POSTER_ML_VERBOSE"
QUIET_VARIABLE = "POSTER_ML_QUIET"
TRUE = ("1", "true", "yes")


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_VARIABLE, "").lower() in TRUE


def is_quiet() -> bool:
    return os.environ.get(QUIET_VARIABLE, "").lower() in TRUE and not is_verbose()


class ConsoleHandler(logging.StreamHandler):
    """Writes each record's message to the current standard output (looked up at each
    record, so a redirected or captured stdout gets it)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self.setFormatter(logging.Formatter("%(message)s"))

    @property  # The stream follows sys.stdout.
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logger(level: int) -> None:
    """The `poster_ml` logger prints its messages, alone, at `level`."""
    logger = logging.getLogger("poster_ml")
    for handler in [h for h in logger.handlers if isinstance(h, ConsoleHandler)]:
        logger.removeHandler(handler)
    logger.addHandler(ConsoleHandler())
    logger.setLevel(level)
    logger.propagate = False


def configure_output(verbose: bool, quiet: bool = False) -> None:
    """Sets what libraries print, before any of them is imported by a step. Child
    processes (the steps `main` runs, a server) inherit the choice through the environment."""
    if quiet and not verbose:
        os.environ[QUIET_VARIABLE] = "1"
    if verbose or is_verbose():
        os.environ[VERBOSE_VARIABLE] = "1"
        configure_logger(logging.DEBUG)
        return
    configure_logger(logging.WARNING if is_quiet() else logging.INFO)
    # TensorFlow's C++ logging: 3 keeps errors that end a run, drops notes and warnings.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow's own INFO lines ("Validating input example ...", "Creating initial tables").
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("alembic", "absl"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def silenced_stderr() -> Iterator[None]:
    """Holds back what native code writes to the error stream (TensorFlow's start-up and
    CUDA probe notes, written before its logging is set up, so no setting reaches them),
    unless verbose. Python exceptions are raised as usual."""
    if is_verbose():
        yield
        return
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow() -> None:
    """Imports TensorFlow and Keras once, quietly, for the steps that use them."""
    with silenced_stderr():
        import keras  # noqa: F401
