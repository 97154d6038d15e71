"""What a run prints by default: steps, per-variant progress, Keras's epoch lines, tables,
links and decisions. TensorFlow's start-up notes, CUDA probes on a machine without a GPU,
MLflow's INFO logs and artifact-download progress bars are held back; `--verbose` (or
POSTER_ML_VERBOSE=1, which `mlflow run` passes on to its entry points) shows them all.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

VERBOSE_VARIABLE = "POSTER_ML_VERBOSE"


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_VARIABLE, "").lower() in ("1", "true", "yes")


def configure_output(verbose: bool) -> None:
    """Sets what libraries print, before any of them is imported by a step. Child
    processes (the steps `main` runs, a server) inherit the choice through the environment."""
    if verbose or is_verbose():
        os.environ[VERBOSE_VARIABLE] = "1"
        return
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
