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

from poster_ml.config import environment


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
    environment.hand_on_console_mode(verbose, quiet)
    if environment.is_verbose():
        configure_logger(logging.DEBUG)
        return
    configure_logger(logging.WARNING if environment.is_quiet() else logging.INFO)
    environment.quiet_libraries()
    for name in ("alembic", "absl"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def silenced_stderr() -> Iterator[None]:
    """Holds back what native code writes to the error stream (TensorFlow's start-up and
    CUDA probe notes, written before its logging is set up, so no setting reaches them),
    unless verbose. Python exceptions are raised as usual."""
    if environment.is_verbose():
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
