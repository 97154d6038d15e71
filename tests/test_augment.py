"""The fused warp and the streaming pipeline: determinism, shapes, ranges, geometry."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from poster_ml.augment import random_transforms, warp
from poster_ml.config import AugmentConfig
from poster_ml.pipeline import batch_plan, image_batches

IDENTITY = AugmentConfig(rotation_degrees=0, zoom=0, width_shift=0, height_shift=0, shear_degrees=0, horizontal_flip=False)


def test_identity_transform_leaves_images_unchanged():
    images = np.random.default_rng(0).uniform(0, 255, (3, 20, 30, 3)).astype("float32")
    transforms = random_transforms(np.random.default_rng(0), 3, 20, 30, IDENTITY)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(warp(images, transforms)), images, atol=1e-3)


def test_flip_mirrors_and_shift_moves_content():
    image = np.zeros((1, 20, 30, 3), "float32")
    image[0, 8:12, 2:6] = 255  # A bright block near the left edge.
    flips = random_transforms(np.random.default_rng(3), 16, 20, 30, dataclasses.replace(IDENTITY, horizontal_flip=True))
    warped = keras.ops.convert_to_numpy(warp(np.repeat(image, 16, 0), flips))
    mirrored = [np.allclose(w, image[0, :, ::-1], atol=1e-3) for w in warped]
    unchanged = [np.allclose(w, image[0], atol=1e-3) for w in warped]
    assert all(m or u for m, u in zip(mirrored, unchanged)) and any(mirrored) and any(unchanged)


def test_rotation_by_the_composed_matrix_matches_rot90():
    # A 90-degree rotation about the centre of a square image is exact, so it checks the algebra.
    image = np.random.default_rng(1).uniform(0, 255, (1, 9, 9, 3)).astype("float32")
    config = dataclasses.replace(IDENTITY, rotation_degrees=90)

    class Fixed:  # A generator whose uniform draws are all at the top of the range.
        def uniform(self, low, high, size):
            return np.full(size, high, dtype=float)

        def random(self, size):
            return np.ones(size)

    transforms = random_transforms(Fixed(), 1, 9, 9, config)
    warped = keras.ops.convert_to_numpy(warp(image, transforms))[0]
    rotated = [np.rot90(image[0], k) for k in (1, 3)]
    assert any(np.allclose(warped, candidate, atol=1e-3) for candidate in rotated)


def test_augmented_batches_are_deterministic_under_a_seed_and_keep_shape_and_range(synthetic_dataset):
    def first_epoch(seed):
        batches = image_batches(synthetic_dataset, "train", 16, seed, augment=AugmentConfig(), shuffle=True)
        return [(keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y)) for x, y in batches.take(3)]

    first, again, other = first_epoch(5), first_epoch(5), first_epoch(6)
    for (x1, y1), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(first[0][0], other[0][0])
    images = first[0][0]
    size = synthetic_dataset.image_size
    assert images.shape == (16, size, size, 3) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 255


def test_each_epoch_visits_every_row_once_in_a_new_seeded_order():
    plans = [np.concatenate(batch_plan(50, 8, seed=3, epoch=epoch, shuffle=True)) for epoch in (0, 1)]
    assert all(sorted(plan) == list(range(50)) for plan in plans)
    assert not np.array_equal(plans[0], plans[1])
    np.testing.assert_array_equal(plans[0], np.concatenate(batch_plan(50, 8, seed=3, epoch=0, shuffle=True)))


def test_unaugmented_batches_are_the_stored_pixels_in_order(synthetic_dataset):
    batches = image_batches(synthetic_dataset, "validation", 32, seed=0)
    images = np.concatenate([keras.ops.convert_to_numpy(x) for x, _ in batches])
    labels = np.concatenate([keras.ops.convert_to_numpy(y) for _, y in batches])
    np.testing.assert_array_equal(images, np.load(synthetic_dataset.path / "validation.npy").astype("float32"))
    np.testing.assert_array_equal(labels, synthetic_dataset.labels("validation"))


@pytest.mark.parametrize("field", ["rotation_degrees", "zoom", "width_shift", "height_shift", "shear_degrees"])
def test_each_transform_changes_the_matrix(field):
    config = dataclasses.replace(IDENTITY, **{field: 0.3 if field != "rotation_degrees" else 30.0})
    transforms = random_transforms(np.random.default_rng(0), 4, 20, 20, config)
    identity = random_transforms(np.random.default_rng(0), 4, 20, 20, IDENTITY)
    assert not np.allclose(transforms, identity)
