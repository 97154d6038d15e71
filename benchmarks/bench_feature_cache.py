"""Epoch time of vgg16_features: the head on cached features against running the frozen
VGG16 base on every batch of every epoch, side by side in one run.

    python benchmarks/bench_feature_cache.py [--count 300] [--size 224]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

from poster_ml.config import PreprocessConfig, TrainConfig
from poster_ml.data.batches import Streaming, image_batches, streamed_batches
from poster_ml.data.prepare import prepare
from poster_ml.models.feature_cache import cached_features, feature_cache_dir
from poster_ml.models.fit import compile_model
from poster_ml.models.variants import VARIANTS, build_model


def epoch_seconds(model: keras.Model, batches) -> float:
    """Seconds of one training epoch, after a first epoch that traces and warms up."""
    model.fit(batches, epochs=1, verbose=0, shuffle=False)
    start = time.perf_counter()
    model.fit(batches, epochs=1, verbose=0, shuffle=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--count", type=int, default=300, help="synthetic posters (48 percent train)"
    )
    parser.add_argument("--size", type=int, default=224)
    arguments = parser.parse_args()
    variant = VARIANTS["vgg16_features"]
    with tempfile.TemporaryDirectory() as folder:
        data = prepare(PreprocessConfig(count=arguments.count, size=arguments.size, out=folder))
        config = TrainConfig(weights="none")
        model = build_model(variant, data.image_size, weights="none")
        compile_model(model, variant)
        uncached = epoch_seconds(
            model,
            image_batches(data, "train", Streaming(config.batch_size, config.seed, shuffle=True)),
        )

        extractor = keras.Model(model.input, model.get_layer("flatten").input)
        start = time.perf_counter()
        reader = cached_features(
            extractor,
            data,
            "train",
            feature_cache_dir(
                data, extractor, variant.base, config.weights, config.seed, config.feature_cache
            ),
            config.batch_size,
        )
        cache_seconds = time.perf_counter() - start
        features = keras.Input(reader.shape[1:])
        head = keras.Model(features, variant.head(features, variant.dropout))
        compile_model(head, variant)
        cached = epoch_seconds(
            head,
            streamed_batches(
                reader,
                data.labels("train"),
                Streaming(config.batch_size, config.seed, shuffle=True),
            ),
        )

    print(
        f"vgg16_features, {len(reader)} training posters at {arguments.size} px, {os.cpu_count()} cores"
    )
    print(f"frozen base every epoch  {uncached:8.3f} s/epoch")
    print(
        f"head on cached features  {cached:8.3f} s/epoch  (cache built once in {cache_seconds:.2f} s)"
    )
    print(f"speed-up per epoch: {uncached / cached:.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
