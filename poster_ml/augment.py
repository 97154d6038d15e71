"""Augmentation as ONE affine warp per image.

The study's five random transforms (rotation, zoom, width and height shift, shear,
horizontal flip) are composed into a single 3 x 3 matrix per image, so each image is
resampled once instead of once per transform. The random parameters are drawn with
NumPy from a generator seeded per batch, so a run is reproducible whatever the
parallelism; the warp itself is `keras.ops.image.affine_transform`, batched, on any
backend.
"""

from __future__ import annotations

import numpy as np

from poster_ml.config import AugmentConfig


def random_transforms(rng: np.random.Generator, count: int, height: int, width: int, config: AugmentConfig) -> np.ndarray:
    """Draws `count` affine transforms as (count, 8) rows for keras.ops.image.affine_transform.

    Each row maps an output pixel (x, y) to the input point it samples, as the old
    ImageDataGenerator did: rotation, shear and zoom about the centre, then the shift.
    Zoom factors above 1 zoom out; shear is an angle in degrees, as there.
    """
    theta = np.deg2rad(rng.uniform(-config.rotation_degrees, config.rotation_degrees, count))
    shear = np.deg2rad(rng.uniform(-config.shear_degrees, config.shear_degrees, count))
    zoom_x, zoom_y = (rng.uniform(1 - config.zoom, 1 + config.zoom, (2, count)) if config.zoom else np.ones((2, count)))
    shift_x = rng.uniform(-config.width_shift, config.width_shift, count) * width
    shift_y = rng.uniform(-config.height_shift, config.height_shift, count) * height
    flip = (rng.random(count) < 0.5) if config.horizontal_flip else np.zeros(count, dtype=bool)

    cos, sin = np.cos(theta), np.sin(theta)
    # Linear part A = rotation @ shear @ zoom, written out per element.
    a00 = cos * zoom_x
    a01 = (-cos * np.sin(shear) - sin * np.cos(shear)) * zoom_y
    a10 = sin * zoom_x
    a11 = (-sin * np.sin(shear) + cos * np.cos(shear)) * zoom_y
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    # A horizontal flip of the output mirrors x before the mapping: x -> (width - 1) - x.
    sign = np.where(flip, -1.0, 1.0)
    x_offset = np.where(flip, width - 1.0, 0.0)
    rows = np.empty((count, 8), dtype=np.float32)
    rows[:, 0] = a00 * sign
    rows[:, 1] = a01
    rows[:, 2] = a00 * (x_offset - centre_x) - a01 * centre_y + centre_x + shift_x
    rows[:, 3] = a10 * sign
    rows[:, 4] = a11
    rows[:, 5] = a10 * (x_offset - centre_x) - a11 * centre_y + centre_y + shift_y
    rows[:, 6:] = 0.0
    return rows


def warp(images, transforms):
    """Resamples a batch of images once through their transforms (bilinear, nearest fill)."""
    import keras

    return keras.ops.image.affine_transform(images, transforms, interpolation="bilinear", fill_mode="nearest")
