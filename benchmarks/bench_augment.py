"""Augmentation throughput: the fused warp against a stack of Keras Random* layers and
against the study's ImageDataGenerator (from the tf-keras package), on the same images,
side by side in one run.

    python benchmarks/bench_augment.py [--images 256] [--size 224]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf

from poster_ml.config import AugmentConfig
from poster_ml.data.augment import random_transforms, warp

BATCH = 32


def images_per_second(run_batches, count: int, repeats: int = 2) -> float:
    run_batches()  # Warm-up: tracing, thread pools, caches.
    best = min(_timed(run_batches) for _ in range(repeats))
    return count / best


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    arguments = parser.parse_args()
    config = AugmentConfig()
    images = np.random.default_rng(0).integers(0, 256, (arguments.images, arguments.size, arguments.size, 3)).astype("float32")
    batches = [images[start : start + BATCH] for start in range(0, len(images), BATCH)]

    fused_warp = tf.function(warp)
    rng = np.random.default_rng(1)

    def fused():
        for batch in batches:
            fused_warp(batch, random_transforms(rng, len(batch), arguments.size, arguments.size, config)).numpy()

    # The Keras 3 way without fusion: each layer resamples the image again.
    stack = keras.Sequential([
        keras.layers.RandomRotation(config.rotation_degrees / 360, fill_mode="nearest"),
        keras.layers.RandomZoom(config.zoom, config.zoom, fill_mode="nearest"),
        keras.layers.RandomTranslation(config.height_shift, config.width_shift, fill_mode="nearest"),
        keras.layers.RandomShear(x_factor=np.tan(np.deg2rad(config.shear_degrees)), y_factor=np.tan(np.deg2rad(config.shear_degrees)), fill_mode="nearest"),
        keras.layers.RandomFlip("horizontal"),
    ])
    stacked_call = tf.function(lambda batch: stack(batch, training=True))

    def layers():
        for batch in batches:
            stacked_call(batch).numpy()

    from tf_keras.preprocessing.image import ImageDataGenerator

    generator = ImageDataGenerator(
        rotation_range=config.rotation_degrees, zoom_range=config.zoom, width_shift_range=config.width_shift,
        height_shift_range=config.height_shift, shear_range=config.shear_degrees, horizontal_flip=True, fill_mode="nearest",
    )

    def image_data_generator():
        flow = generator.flow(images, batch_size=BATCH, shuffle=False, seed=0)
        for _ in range(len(flow)):
            next(flow)

    results = {name: images_per_second(function, len(images)) for name, function in (("fused warp", fused), ("Random* layers", layers), ("ImageDataGenerator", image_data_generator))}
    print(f"{len(images)} images of {arguments.size} x {arguments.size}, batches of {BATCH}, {os.cpu_count()} cores")
    for name, rate in results.items():
        print(f"{name:<20} {rate:9.1f} images/s")
    print(f"fused warp vs ImageDataGenerator: {results['fused warp'] / results['ImageDataGenerator']:.1f}x (target >= 3x, goal 5x)")
    print(f"fused warp vs Random* layers:     {results['fused warp'] / results['Random* layers']:.1f}x")


if __name__ == "__main__":
    main()
