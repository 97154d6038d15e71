"""Batched prediction: the probability of fresh for decoded posters."""

from __future__ import annotations

import numpy as np


def predict_probabilities(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The model's probability of fresh for uint8 images, in batches (resized first if the
    model takes another size, as an older champion may)."""
    import keras

    side = model.inputs[0].shape[1]
    if side is not None and side != images.shape[1]:
        images = keras.ops.convert_to_numpy(
            keras.ops.image.resize(
                images.astype(np.float32), (side, side), interpolation="bilinear"
            )
        )

    outputs = [
        keras.ops.convert_to_numpy(
            model(images[start : start + batch_size].astype(np.float32), training=False)
        )
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs).reshape(-1)


def predict_rows(model, reader, chunk: int = 256) -> np.ndarray:
    """The model's probability of fresh for every row of a shard (posters, or a head's
    cached features), in the shard's order, read a chunk at a time."""
    rows = np.arange(len(reader))
    return np.concatenate(
        [
            predict_probabilities(model, reader.read(rows[start : start + chunk]))
            for start in range(0, len(rows), chunk)
        ]
        or [np.empty(0)]
    )


def predict_test_split(model, data, chunk: int = 256) -> np.ndarray:
    """The model's probability of fresh for every test poster of a PreparedData (evaluate
    and the register gate both score the test split this way)."""
    return predict_rows(model, data.reader("test"), chunk)
