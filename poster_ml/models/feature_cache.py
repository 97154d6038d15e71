"""The feature cache: a frozen base's features of each split, computed once and reused.

The base runs once per poster instead of once per poster per epoch, as the study did by
hand. A cache is keyed by everything that changes the features: the dataset's identity
(which covers the image size and decode settings), the base, its weights (the file's
digest for a weights file; the seed for random weights, which the seed initialises), the
dtype policy it ran under and which of its layers were trainable.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from poster_ml.data.batches import Streaming, image_batches
from poster_ml.data.prepared import PreparedData, Shard, create_shard
from poster_ml.locks import exclusive


def feature_cache_dir(
    data: PreparedData, extractor: keras.Model, base: str, weights: str, seed: int, root: str = ""
) -> Path:
    """The cache folder for these features; any change to what they depend on gives a new one."""
    if Path(weights).is_file():
        weights = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    key = json.dumps(
        {
            "dataset": data.digest,
            "base": base,
            "weights": weights,
            "seed": seed if weights == "none" else None,
            "size": data.image_size,
            "dtype_policy": keras.config.dtype_policy().name,
            "trainable": [
                layer.name for layer in extractor.layers if layer.trainable and layer.weights
            ],
        },
        sort_keys=True,
    )
    return (Path(root) if root else data.path / "features") / hashlib.sha256(
        key.encode()
    ).hexdigest()[:16]


def cached_features(
    extractor: keras.Model, data: PreparedData, split: str, cache: Path, batch_size: int
) -> Shard:
    """The base's features of one split, computed once, streamed to a .npy file, then reused.

    A second training that needs the same cache at the same time waits for the first to
    finish it, then reads it.
    """
    path = cache / f"{split}.npy"
    with exclusive(cache / f".{split}.lock", wait=True):
        if not path.exists():
            compute_features(extractor, data, split, path, batch_size)
    return Shard(path)


def compute_features(
    extractor: keras.Model, data: PreparedData, split: str, path: Path, batch_size: int
) -> None:
    """Streams the extractor's output for every poster of a split into `path`, renamed into
    place only once complete."""
    partial = path.with_name(f"{split}.partial.npy")
    create_shard(partial, (len(data.split(split)), *extractor.output.shape[1:]), np.float32)
    output, start = Shard(partial), 0
    batches = image_batches(data, split, Streaming(batch_size, seed=0))
    for images, _ in tqdm(
        batches, total=len(batches), desc=f"caching {split} features", unit="batch", disable=None
    ):
        batch = keras.ops.convert_to_numpy(extractor(images, training=False))
        output.write(start, batch)
        start += len(batch)
    partial.rename(path)
