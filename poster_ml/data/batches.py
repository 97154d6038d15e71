"""The streaming input pipeline: shard reads, seeded shuffling, one fused warp, prefetch.

Batches are read from the split's shard a batch at a time, so memory does not grow with
the dataset. Shuffling and augmentation parameters come from NumPy generators seeded
by (seed, epoch, batch), so two runs with one seed see the same batches.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import tensorflow as tf

from poster_ml.config import AugmentConfig
from poster_ml.data.augment import random_transforms, warp_on_host
from poster_ml.data.prepared import PreparedData, Shard

IDENTITY = np.array([1, 0, 0, 0, 1, 0, 0, 0], dtype=np.float32)


def batch_plan(
    count: int, batch_size: int, seed: int, epoch: int, shuffle: bool
) -> list[np.ndarray]:
    """The row indices of each batch of one epoch."""
    order = np.random.default_rng([seed, epoch]).permutation(count) if shuffle else np.arange(count)
    return [order[start : start + batch_size] for start in range(0, count, batch_size)]


@dataclasses.dataclass(frozen=True)
class Streaming:
    """How a split is streamed: batch size, seed, and for training the shuffling, the
    augmentation and where it warps ("host": OpenCV here; "device": the model's training
    step), and the epoch a resumed training starts at."""

    batch_size: int
    seed: int
    augment: AugmentConfig | None = None
    shuffle: bool = False
    first_epoch: int = 0
    augment_on: str = "host"


def image_batches(data: PreparedData, split: str, streaming: Streaming) -> tf.data.Dataset:
    """(images float32 in [0, 255], labels float32) batches of one split, streamed from disk."""
    return streamed_batches(data.reader(split), data.labels(split), streaming)


def streamed_batches(reader: Shard, labels: np.ndarray, streaming: Streaming) -> tf.data.Dataset:
    """(rows as float32, labels) batches of any shard: poster pixels or cached features.

    With an augmentation, the host path warps each batch here (OpenCV, uint8, every core);
    the device path streams the uint8 batch and its transforms as {"image", "transform"},
    and the model's training step warps them (fit.py). A training resumed at
    `first_epoch` gets that epoch's order and transforms, as if it had never stopped."""
    epochs = itertools.count(streaming.first_epoch)

    def generate():
        # tf.data calls this once per pass, so each epoch gets its own seeded order.
        yield from epoch_batches(reader, labels, streaming, next(epochs))

    row_spec = tf.TensorSpec((None, *reader.shape[1:]), tf.as_dtype(reader.dtype))
    label_spec = tf.TensorSpec((None,), tf.float32)
    if streaming.augment_on == "device":
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
    batches = -(-len(reader) // streaming.batch_size)
    return dataset.apply(tf.data.experimental.assert_cardinality(batches)).prefetch(
        tf.data.AUTOTUNE
    )


def epoch_batches(reader: Shard, labels: np.ndarray, streaming: Streaming, epoch: int):
    """One epoch's (inputs, labels) batches, in that epoch's seeded order."""
    height, width = reader.shape[1:3]
    plan = batch_plan(len(reader), streaming.batch_size, streaming.seed, epoch, streaming.shuffle)
    for number, rows in enumerate(plan):
        batch = reader.read(rows)
        if streaming.augment is None:
            # The device path's model takes transforms too: the identity leaves a
            # validation poster as it is.
            transforms = np.tile(IDENTITY, (len(rows), 1))
        else:
            generator = np.random.default_rng([streaming.seed, epoch, number, 1])
            transforms = random_transforms(generator, len(rows), height, width, streaming.augment)
        if streaming.augment_on == "device":
            yield {"image": batch, "transform": transforms}, labels[rows]
        elif streaming.augment is None:
            yield batch, labels[rows]
        else:
            yield warp_on_host(batch, transforms), labels[rows]
