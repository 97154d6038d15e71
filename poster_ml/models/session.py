"""Releasing what one training leaves behind, so that memory stays flat from trial to trial.

Deleting the model, `keras.backend.clear_session()` and garbage collection free most of
it. One more thing stays with TensorFlow: each graph-mode trace of a `tf.custom_gradient`
(Keras's own ops use it) registers its gradient function under a new name in a
process-wide registry that is never emptied, and that function holds the whole traced
graph, megabytes a trial (benchmarks/RESULTS.md, memory of an epoch). The gradients were built when the training
step was traced, so once the trial's model is gone the names it registered are dead and
can be dropped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import keras

CUSTOM_GRADIENT_PREFIX = "CustomGradient-"  # The names tf.custom_gradient registers under.
Result = TypeVar("Result")


def gradient_registry() -> dict | None:
    """TensorFlow's registry of graph-mode gradient functions, a private name with no
    public equivalent; None on another backend. If a TensorFlow release moves it, this
    fails loudly (and `tests/test_tuning.py` with it) rather than letting memory grow."""
    if keras.backend.backend() != "tensorflow":
        return None
    from tensorflow.python.framework import ops

    return ops._gradient_registry._registry


def releasing_memory(train: Callable[..., Result]) -> Callable[..., Result]:
    """Wraps one training (an Optuna objective, say) so that what it traced is released
    when it returns or raises: its custom-gradient entries, the Keras session, cycles."""

    @functools.wraps(train)
    def wrapped(*args, **kwargs) -> Result:
        registry = gradient_registry()
        before = set(registry) if registry is not None else set()
        try:
            return train(*args, **kwargs)
        finally:
            if registry is not None:
                for name in set(registry) - before:
                    if name.startswith(CUSTOM_GRADIENT_PREFIX):
                        del registry[name]
            # Keras's clear_session collects the garbage itself (free_memory): a full
            # collection costs seconds in a process that holds many models, so once.
            keras.backend.clear_session()

    return wrapped
