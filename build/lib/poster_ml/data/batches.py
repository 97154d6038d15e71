"""The streaming input pipeline: shard reads, seeded shuffling, one fused warp, prefetch.

Batches are read from the split's shard a batch at a time, so memory does not grow with
the dataset. Shuffling and augmentation parameters come from NumPy generators seeded
by (seed, epoch, batch), so two runs with one seed see the same batches.
"""

from __future__ import annotations

import itertools

import numpy as np
import tensorflow as tf

from poster_ml.config import AugmentConfig
from poster_ml.data.augment import random_transforms, warp_on_host
from poster_ml.data.prepared import PreparedData, ShardReader

IDENTITY = np.array([1, 0, 0, 0, 1, 0, 0, 0], dtype=np.float32)


def batch_plan(
    count: int, batch_size: int, seed: int, epoch: int, shuffle: bool
) -> list[np.ndarray]:
    """The row indices of each batch of one epoch."""
    order = np.random.default_rng([seed, epoch]).permutation(count) if shuffle else np.arange(count)
    return [order[start : start + batch_size] for start in range(0, count, batch_size)]


def image_batches(
    data: PreparedData,
    split: str,
    batch_size: int,
    seed: int,
    augment: AugmentConfig | None = None,
    shuffle: bool = False,
    first_epoch: int = 0,
    augment_on: str = "host",
) -> tf.data.Dataset:
    """(images float32 in [0, 255], labels float32) batches of one split, streamed from disk."""
    return streamed_batches(
        data.reader(split),
        data.labels(split),
        batch_size,
        seed,
        augment,
        shuffle,
        first_epoch,
        augment_on,
    )


def streamed_batches(
    reader: ShardReader,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    augment: AugmentConfig | None = None,
    shuffle: bool = False,
    first_epoch: int = 0,
    augment_on: str = "host",
) -> tf.data.Dataset:
    """(rows as float32, labels) batches of any shard: poster pixels or cached features.

    With `augment`, the host path warps each batch here (OpenCV, uint8, every core); the
    device path ("device") streams the uint8 batch and its transforms as
    {"image", "transform"}, and the model's training step warps them (fit.py). A training
    resumed at `first_epoch` gets that epoch's order and transforms, as if it had never
    stopped."""
    epochs = itertools.count(first_epoch)
    row_shape = reader.shape[1:]

    def generate():
        # tf.data calls this once per pass, so each epoch gets its own seeded order.
        epoch = next(epochs)
        for number, rows in enumerate(batch_plan(len(reader), batch_size, seed, epoch, shuffle)):
            batch = reader.read(rows)
            if augment is None:
                # The device path's model takes transforms too: the identity leaves a
                # validation poster as it is.
                yield (
                    (
                        {"image": batch, "transform": np.tile(IDENTITY, (len(rows), 1))}
                        if augment_on == "device"
                        else batch
                    ),
                    labels[rows],
                )
                continue
            transforms = random_transforms(
                np.random.default_rng([seed, epoch, number, 1]),
                len(rows),
                row_shape[0],
                row_shape[1],
                augment,
            )
            if augment_on == "device":
                yield {"image": batch, "transform": transforms}, labels[rows]
            else:
                yield warp_on_host(batch, transforms), labels[rows]

    row_spec = tf.TensorSpec((None, *row_shape), tf.as_dtype(reader.dtype))
    label_spec = tf.TensorSpec((None,), tf.float32)
    if augment_on == "device":
        inputs_spec = {"image": row_spec, "transform": tf.TensorSpec((None, 8), tf.float32)}
        dataset = tf.data.Dataset.from_generator(
            generate, output_signature=(inputs_spec, label_spec)
        )
    else:
        dataset = tf.data.Dataset.from_generator(generate, output_signature=(row_spec, label_spec))
        dataset = dataset.map(
            lambda rows, y: (tf.cast(rows, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    # The generator hides its length; telling tf.data lets Keras size progress and epochs.
    batches = -(-len(reader) // batch_size)
    return dataset.apply(tf.data.experimental.assert_cardinality(batches)).prefetch(
        tf.data.AUTOTUNE
    )
