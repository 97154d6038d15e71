"""Augmentation as ONE affine warp per image, the study's ImageDataGenerator to the letter.

The study's five random transforms (rotation, zoom, width and height shift, shear,
horizontal flip) are composed into a single matrix per image, so each image is resampled
once instead of once per transform. Parameters are drawn as ImageDataGenerator drew them
(rotation and shear in degrees, shifts as shares of the side, one zoom factor per axis)
and composed as it composed them: rotation, then shift, then shear, then zoom, about the
image centre, so that the shift turns with the rotation (a width shift of 0.2 reaches
0.28 of the side along an axis at 45 degrees, as in the study). The flip mirrors the
warped image. tests/test_augment.py checks the warp against ImageDataGenerator's own
`apply_transform` for fixed parameters.

The random parameters are drawn with NumPy from a generator seeded per batch, so a run is
reproducible whatever the parallelism; the warp itself is
`keras.ops.image.affine_transform`, batched, on any backend.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools

import numpy as np

from poster_ml.config import AugmentConfig, environment


@dataclasses.dataclass(frozen=True)
class TransformParameters:
    """One value per image, in ImageDataGenerator's names and units. Its matrices act on
    (x, y) = (column, row) coordinates, so `tx` and `zx` are horizontal."""

    theta: np.ndarray  # rotation, degrees
    tx: np.ndarray  # horizontal shift, pixels
    ty: np.ndarray  # vertical shift, pixels
    shear: np.ndarray  # degrees
    zx: np.ndarray  # horizontal zoom; above 1 zooms out
    zy: np.ndarray  # vertical zoom
    flip: np.ndarray  # mirror left to right


def draw_parameters(
    rng: np.random.Generator, count: int, height: int, width: int, config: AugmentConfig
) -> TransformParameters:
    """Draws `count` sets of parameters as ImageDataGenerator.get_random_transform did.

    (ImageDataGenerator scales its horizontal shift by the height and its vertical one by
    the width; on the square posters here that is the same, and this scales each by its
    own side.)
    """
    zoom = (
        rng.uniform(1 - config.zoom, 1 + config.zoom, (2, count))
        if config.zoom
        else np.ones((2, count))
    )
    return TransformParameters(
        theta=rng.uniform(-config.rotation_degrees, config.rotation_degrees, count),
        tx=rng.uniform(-config.width_shift, config.width_shift, count) * width,
        ty=rng.uniform(-config.height_shift, config.height_shift, count) * height,
        shear=rng.uniform(-config.shear_degrees, config.shear_degrees, count),
        zx=zoom[0],
        zy=zoom[1],
        flip=(rng.random(count) < 0.5) if config.horizontal_flip else np.zeros(count, dtype=bool),
    )


def affine_rows(parameters: TransformParameters, height: int, width: int) -> np.ndarray:
    """(count, 8) rows for keras.ops.image.affine_transform: each maps an output pixel
    (x, y) to the input point it samples, through rotation @ shift @ shear @ zoom about
    the image centre, as ImageDataGenerator composed them."""
    count = len(parameters.theta)
    theta, shear = np.deg2rad(parameters.theta), np.deg2rad(parameters.shear)
    identity = np.tile(np.eye(3), (count, 1, 1))
    rotation, shift, shearing, zoom, centre, back = (identity.copy() for _ in range(6))
    rotation[:, 0, 0], rotation[:, 0, 1], rotation[:, 1, 0], rotation[:, 1, 1] = (
        np.cos(theta),
        -np.sin(theta),
        np.sin(theta),
        np.cos(theta),
    )
    shift[:, 0, 2], shift[:, 1, 2] = parameters.tx, parameters.ty
    shearing[:, 0, 1], shearing[:, 1, 1] = -np.sin(shear), np.cos(shear)
    zoom[:, 0, 0], zoom[:, 1, 1] = parameters.zx, parameters.zy
    centre[:, 0, 2], centre[:, 1, 2] = (width - 1) / 2, (height - 1) / 2
    back[:, 0, 2], back[:, 1, 2] = -(width - 1) / 2, -(height - 1) / 2
    matrix = centre @ rotation @ shift @ shearing @ zoom @ back
    rows = np.zeros((count, 8), dtype=np.float32)
    rows[:, :6] = matrix[:, :2, :].reshape(count, 6)
    # The flip mirrors the warped image: output x reads the warp at (width - 1 - x).
    flip = parameters.flip
    rows[flip, 2] += rows[flip, 0] * (width - 1)
    rows[flip, 5] += rows[flip, 3] * (width - 1)
    rows[flip, 0] *= -1
    rows[flip, 3] *= -1
    return rows


def random_transforms(
    rng: np.random.Generator, count: int, height: int, width: int, config: AugmentConfig
) -> np.ndarray:
    """Draws `count` random transforms as (count, 8) rows for keras.ops.image.affine_transform."""
    return affine_rows(draw_parameters(rng, count, height, width, config), height, width)


def warp(images, transforms):
    """Resamples a batch of images once through their transforms (bilinear, nearest fill),
    with Keras on whatever device holds them: the device path, in the training step."""
    import keras

    return keras.ops.image.affine_transform(
        images, transforms, interpolation="bilinear", fill_mode="nearest"
    )


@functools.cache
def _host_pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    import cv2

    cv2.setNumThreads(1)  # One image per thread; OpenCV releases the GIL while it warps.
    return concurrent.futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="warp")


def host_threads() -> int:
    """Warping threads: every core, unless POSTER_ML_WARP_THREADS says otherwise."""
    return environment.warp_threads()


def warp_on_host(images: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """The same warp on the CPU, in uint8 with OpenCV's fixed-point bilinear kernel (faster
    than its float32 projective kernel: benchmarks/bench_augment.py), one image per core.
    The rows map output pixels to input points, which OpenCV calls WARP_INVERSE_MAP."""
    import cv2

    warped = np.empty_like(images)
    height, width = images.shape[1:3]

    def one(index: int) -> None:
        matrix = transforms[index, :6].reshape(2, 3).astype(np.float64)
        cv2.warpAffine(
            images[index],
            matrix,
            (width, height),
            dst=warped[index],
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )

    list(_host_pool(host_threads()).map(one, range(len(images))))
    return warped
