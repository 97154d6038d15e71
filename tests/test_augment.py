"""The fused warp and the streaming pipeline: determinism, shapes, ranges, geometry."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest

from poster_ml.config import AugmentConfig
from poster_ml.data.augment import TransformParameters, affine_rows, random_transforms, warp
from poster_ml.data.batches import Streaming, batch_plan, image_batches

IDENTITY = AugmentConfig(
    rotation_degrees=0,
    zoom=0,
    width_shift=0,
    height_shift=0,
    shear_degrees=0,
    horizontal_flip=False,
)


def test_identity_transform_leaves_images_unchanged():
    images = np.random.default_rng(0).uniform(0, 255, (3, 20, 30, 3)).astype("float32")
    transforms = random_transforms(np.random.default_rng(0), 3, 20, 30, IDENTITY)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(warp(images, transforms)), images, atol=1e-3
    )


def parameters(**values) -> TransformParameters:
    """One image's transform, the identity but for `values`."""
    fields = {
        "theta": 0.0,
        "tx": 0.0,
        "ty": 0.0,
        "shear": 0.0,
        "zx": 1.0,
        "zy": 1.0,
        "flip": False,
    } | values
    return TransformParameters(**{name: np.array([value]) for name, value in fields.items()})


def warped(image: np.ndarray, **values) -> np.ndarray:
    height, width = image.shape[:2]
    return keras.ops.convert_to_numpy(
        warp(image[None], affine_rows(parameters(**values), height, width))
    )[0]


def test_a_shift_moves_content_by_exactly_that_many_pixels_and_a_flip_mirrors_it():
    image = np.zeros((20, 30, 3), "float32")
    image[8:12, 10:14] = 255  # A bright block.
    # A positive shift samples further right (down), so the content moves left (up).
    np.testing.assert_allclose(warped(image, tx=3.0), np.roll(image, -3, axis=1), atol=1e-3)
    np.testing.assert_allclose(warped(image, ty=2.0), np.roll(image, -2, axis=0), atol=1e-3)
    np.testing.assert_allclose(
        warped(image, tx=3.0, flip=True), np.roll(image, -3, axis=1)[:, ::-1], atol=1e-3
    )


def test_a_positive_rotation_turns_the_image_a_quarter_counter_clockwise():
    # A 90-degree rotation about the centre of a square image is exact, so it checks the algebra.
    image = np.random.default_rng(1).uniform(0, 255, (9, 9, 3)).astype("float32")
    np.testing.assert_allclose(warped(image, theta=90.0), np.rot90(image, 1), atol=1e-3)
    np.testing.assert_allclose(warped(image, theta=-90.0), np.rot90(image, 3), atol=1e-3)


@pytest.mark.parametrize(
    "values",
    [
        {"theta": 30.0, "tx": 5.0, "ty": -7.0, "shear": 10.0, "zx": 0.8, "zy": 1.2, "flip": True},
        {"theta": -45.0, "ty": 9.0},
        {"shear": 0.2, "zx": 1.3, "zy": 0.7},
    ],
)
def test_the_fused_warp_matches_image_data_generator(values):
    """The study's augmentation, to interpolation round-off: ImageDataGenerator.apply_transform
    (tf-keras, the benchmark extra) on the same parameters."""
    from tf_keras.preprocessing.image import ImageDataGenerator

    rows, columns = np.mgrid[0:48, 0:48]
    image = np.stack(
        [
            128 + 100 * np.sin(columns / 5),
            128 + 100 * np.cos(rows / 7),
            (columns * 3 + rows * 2) % 255,
        ],
        -1,
    ).astype("float32")
    names = {
        "theta": "theta",
        "tx": "tx",
        "ty": "ty",
        "shear": "shear",
        "zx": "zx",
        "zy": "zy",
        "flip": "flip_horizontal",
    }
    reference = ImageDataGenerator(fill_mode="nearest").apply_transform(
        image, {names[name]: value for name, value in values.items()}
    )
    np.testing.assert_allclose(warped(image, **values), reference, atol=0.01)


def test_augmented_batches_are_deterministic_under_a_seed_and_keep_shape_and_range(
    synthetic_dataset,
):
    def first_epoch(seed):
        batches = image_batches(
            synthetic_dataset, "train", Streaming(16, seed, augment=AugmentConfig(), shuffle=True)
        )
        return [
            (keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y))
            for x, y in batches.take(3)
        ]

    first, again, other = first_epoch(5), first_epoch(5), first_epoch(6)
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(first[0][0], other[0][0])
    images = first[0][0]
    size = synthetic_dataset.image_size
    assert images.shape == (16, size, size, 3) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 255


def test_each_epoch_visits_every_row_once_in_a_new_seeded_order():
    plans = [
        np.concatenate(batch_plan(50, 8, seed=3, epoch=epoch, shuffle=True)) for epoch in (0, 1)
    ]
    assert all(sorted(plan) == list(range(50)) for plan in plans)
    assert not np.array_equal(plans[0], plans[1])
    np.testing.assert_array_equal(
        plans[0], np.concatenate(batch_plan(50, 8, seed=3, epoch=0, shuffle=True))
    )


def test_unaugmented_batches_are_the_stored_pixels_in_order(synthetic_dataset):
    batches = image_batches(synthetic_dataset, "validation", Streaming(32, seed=0))
    images = np.concatenate([keras.ops.convert_to_numpy(x) for x, _ in batches])
    labels = np.concatenate([keras.ops.convert_to_numpy(y) for _, y in batches])
    np.testing.assert_array_equal(
        images, np.load(synthetic_dataset.path / "validation.npy").astype("float32")
    )
    np.testing.assert_array_equal(labels, synthetic_dataset.labels("validation"))


@pytest.mark.parametrize(
    "field", ["rotation_degrees", "zoom", "width_shift", "height_shift", "shear_degrees"]
)
def test_each_transform_changes_the_matrix(field):
    config = dataclasses.replace(IDENTITY, **{field: 0.3 if field != "rotation_degrees" else 30.0})
    transforms = random_transforms(np.random.default_rng(0), 4, 20, 20, config)
    identity = random_transforms(np.random.default_rng(0), 4, 20, 20, IDENTITY)
    assert not np.allclose(transforms, identity)


def test_host_and_device_paths_give_the_same_images_for_the_same_seed(synthetic_dataset):
    """The host warps with OpenCV in uint8, the device with Keras in float32: the same
    transforms, within interpolation round-off."""
    host = image_batches(
        synthetic_dataset,
        "train",
        Streaming(16, seed=5, augment=AugmentConfig(), shuffle=True, augment_on="host"),
    )
    device = image_batches(
        synthetic_dataset,
        "train",
        Streaming(16, seed=5, augment=AugmentConfig(), shuffle=True, augment_on="device"),
    )
    for (host_images, host_labels), (inputs, device_labels) in zip(
        host.take(3), device.take(3), strict=True
    ):
        warped = keras.ops.convert_to_numpy(
            warp(keras.ops.cast(inputs["image"], "float32"), inputs["transform"])
        )
        difference = np.abs(keras.ops.convert_to_numpy(host_images) - warped)
        assert difference.mean() < 0.5 and np.percentile(difference, 99.9) <= 2.0, (
            difference.mean(),
            difference.max(),
        )
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(host_labels), keras.ops.convert_to_numpy(device_labels)
        )


def test_validation_batches_on_the_device_path_carry_identity_transforms(synthetic_dataset):
    inputs, _ = next(
        iter(
            image_batches(
                synthetic_dataset, "validation", Streaming(8, seed=0, augment_on="device")
            )
        )
    )
    warped = keras.ops.convert_to_numpy(
        warp(keras.ops.cast(inputs["image"], "float32"), inputs["transform"])
    )
    np.testing.assert_allclose(
        warped, keras.ops.convert_to_numpy(inputs["image"]).astype("float32"), atol=1e-3
    )
