"""Where and how training computes: the distribution strategy over the GPUs, the dtype
policy, and whether augmentation warps on the host or on the device."""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from poster_ml.config import environment
from poster_ml.data.augment import warp
from poster_ml.devices import has_gpu


def cpu_replicas() -> int:
    return environment.cpu_replicas()


def configure_cpu_replicas() -> None:
    """POSTER_ML_CPU_REPLICAS=N splits the CPU into N logical devices, a stand-in for N GPUs
    (as TensorFlow's own tests do), so the MirroredStrategy path runs on a CPU machine. It
    must happen before TensorFlow starts its runtime: the train step does it first."""
    if cpu_replicas() > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        # RuntimeError: already configured (or started) in this process.
        with contextlib.suppress(RuntimeError):
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas()
            )


def distribution_strategy() -> tf.distribute.Strategy:
    """A MirroredStrategy over every visible GPU (or the logical CPUs standing in for them);
    the default strategy on a CPU."""
    if cpu_replicas() > 1:
        return tf.distribute.MirroredStrategy(
            [device.name for device in tf.config.list_logical_devices("CPU")]
        )
    return tf.distribute.MirroredStrategy() if has_gpu() else tf.distribute.get_strategy()


def dtype_policy(precision: str) -> str:
    if precision == "auto":
        return "mixed_float16" if has_gpu() else "float32"
    return precision


def augment_place(augment_on: str) -> str:
    if augment_on == "auto":
        return "device" if has_gpu() else "host"
    return augment_on


@keras.saving.register_keras_serializable(package="poster_ml")
class DeviceWarp(keras.layers.Layer):
    """The fused augmentation warp as a layer: uint8 images and their transforms in, float32
    images out, on whatever device runs the training step."""

    def call(self, images, transforms):
        return warp(keras.ops.cast(images, "float32"), transforms)


def with_device_warp(model: keras.Model) -> keras.Model:
    """A training-time model that warps each uint8 batch on the device, then runs `model`,
    whose weights it shares (validation batches come with identity transforms). The model
    that is logged and served stays `model`."""
    images = keras.Input(model.inputs[0].shape[1:], name="image", dtype="uint8")
    transforms = keras.Input((8,), name="transform")
    return keras.Model(
        {"image": images, "transform": transforms},
        model(DeviceWarp(name="device_warp")(images, transforms)),
        name=f"{model.name}_device_warp",
    )
