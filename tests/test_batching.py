"""Dynamic batching: concurrent callers share forward passes and each gets its own rows."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from poster_ml.serving.batching import MicroBatcher


def test_concurrent_callers_share_forward_passes_and_get_their_own_rows():
    calls = []

    def forward(images):
        calls.append(len(images))
        time.sleep(0.05)  # While the first pass runs, the other callers queue up.
        return images[:, 0] * 10

    batcher = MicroBatcher(forward, max_posters=4)
    results = {}

    def call(number):
        results[number] = batcher(np.full((number % 3 + 1, 2), float(number)))

    threads = [threading.Thread(target=call, args=(number,)) for number in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for number, rows in results.items():
        np.testing.assert_array_equal(rows, np.full(number % 3 + 1, number * 10.0))
    assert sum(calls) == sum(number % 3 + 1 for number in range(12))
    assert len(calls) < 12  # Shared: fewer passes than callers,
    assert max(calls) <= 4  # and never more posters at once than allowed.


def test_a_lone_caller_is_answered_alone_and_a_model_error_reaches_its_callers():
    batcher = MicroBatcher(lambda images: images.sum(axis=1))
    np.testing.assert_array_equal(batcher(np.ones((3, 4))), [4.0, 4.0, 4.0])

    def broken(images):
        raise ValueError("the model failed")

    with pytest.raises(ValueError, match="the model failed"):
        MicroBatcher(broken)(np.ones((1, 4)))
