"""Augmentation throughput, side by side in one run on the same images: the training
input pipeline (shard reads, a seeded shuffle, the fused warp on the host with OpenCV,
as the training generator does it) on one core and on every core, the same fused warp
in float32 through Keras (the device path's kernel, here on the CPU), a stack of Keras
Random* layers, and the study's ImageDataGenerator (from the tf-keras package).

    python benchmarks/bench_augment.py [--images 512] [--size 224]

Goals: 1,000 images/s per core for the pipeline; 10x ImageDataGenerator on two cores.
Where TensorFlow is not installed (a GPU machine), only the pipeline is measured.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from poster_ml.config import AugmentConfig
from poster_ml.data.augment import random_transforms, warp, warp_on_host
from poster_ml.data.prepared import Shard

BATCH = 32


def images_per_second(run_batches, count: int, repeats: int = 2) -> float:
    run_batches()  # Warm-up: tracing, thread pools, caches.
    best = min(_timed(run_batches) for _ in range(repeats))
    return count / best


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def pipeline(reader: Shard, size: int, config: AugmentConfig, threads: int):
    """What the training generator does for each batch (data/batches.py), without tf.data."""

    def run():
        os.environ["POSTER_ML_WARP_THREADS"] = str(threads)
        order = np.random.default_rng([0, 0]).permutation(len(reader))
        for number, start in enumerate(range(0, len(order), BATCH)):
            rows = order[start : start + BATCH]
            transforms = random_transforms(
                np.random.default_rng([0, 0, number, 1]), len(rows), size, size, config
            )
            warp_on_host(reader.read(rows), transforms)

    return run


def comparisons(images: np.ndarray, size: int, config: AugmentConfig) -> dict:
    """The float32 Keras warp, Random* layers and ImageDataGenerator (TensorFlow needed)."""
    try:
        import keras
        import tensorflow as tf
        from tf_keras.preprocessing.image import ImageDataGenerator
    except ImportError:
        return {}
    floats = images.astype("float32")
    batches = [floats[start : start + BATCH] for start in range(0, len(floats), BATCH)]
    fused_warp = tf.function(warp)
    rng = np.random.default_rng(1)

    def keras_warp():
        for batch in batches:
            fused_warp(batch, random_transforms(rng, len(batch), size, size, config)).numpy()

    # The Keras 3 way without fusion: each layer resamples the image again.
    stack = keras.Sequential(
        [
            keras.layers.RandomRotation(config.rotation_degrees / 360, fill_mode="nearest"),
            keras.layers.RandomZoom(config.zoom, config.zoom, fill_mode="nearest"),
            keras.layers.RandomTranslation(
                config.height_shift, config.width_shift, fill_mode="nearest"
            ),
            keras.layers.RandomShear(
                x_factor=np.tan(np.deg2rad(config.shear_degrees)),
                y_factor=np.tan(np.deg2rad(config.shear_degrees)),
                fill_mode="nearest",
            ),
            keras.layers.RandomFlip("horizontal"),
        ]
    )
    stacked_call = tf.function(lambda batch: stack(batch, training=True))

    def layers():
        for batch in batches:
            stacked_call(batch).numpy()

    generator = ImageDataGenerator(
        rotation_range=config.rotation_degrees,
        zoom_range=config.zoom,
        width_shift_range=config.width_shift,
        height_shift_range=config.height_shift,
        shear_range=config.shear_degrees,
        horizontal_flip=True,
        fill_mode="nearest",
    )

    def image_data_generator():
        flow = generator.flow(floats, batch_size=BATCH, shuffle=False, seed=0)
        for _ in range(len(flow)):
            next(flow)

    return {
        name: images_per_second(function, len(images))
        for name, function in (
            ("Keras warp, float32", keras_warp),
            ("Random* layers", layers),
            ("ImageDataGenerator", image_data_generator),
        )
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--size", type=int, default=224)
    arguments = parser.parse_args()
    config = AugmentConfig()
    images = (
        np.random.default_rng(0)
        .integers(0, 256, (arguments.images, arguments.size, arguments.size, 3))
        .astype("uint8")
    )
    with tempfile.TemporaryDirectory() as folder:
        np.save(f"{folder}/train.npy", images)  # A uint8 shard on disk, as preprocess writes it.
        reader = Shard(f"{folder}/train.npy")
        cores = os.cpu_count() or 1
        results = {
            "pipeline, 1 core": images_per_second(
                pipeline(reader, arguments.size, config, 1), len(images)
            ),
            f"pipeline, {cores} cores": images_per_second(
                pipeline(reader, arguments.size, config, cores), len(images)
            ),
        }
    results |= comparisons(images, arguments.size, config)
    print(
        f"{len(images)} images of {arguments.size} x {arguments.size}, batches of {BATCH}, {cores} cores"
    )
    for name, rate in results.items():
        print(f"{name:<24} {rate:9.1f} images/s")
    total, per_core = results[f"pipeline, {cores} cores"], results["pipeline, 1 core"]
    print(
        f"pipeline per core: {per_core:.0f} images/s (goal 1,000); on {cores} cores: {total:.0f} images/s"
    )
    if "ImageDataGenerator" in results:
        print(
            f"pipeline vs ImageDataGenerator: {total / results['ImageDataGenerator']:.1f}x (target 8x, goal 10x on two cores)"
        )
        print(f"pipeline vs Random* layers:     {total / results['Random* layers']:.1f}x")
        print(f"pipeline vs Keras float32 warp: {total / results['Keras warp, float32']:.1f}x")


if __name__ == "__main__":
    main()
