"""Which accelerator this process has, for placement choices and run tags."""

from __future__ import annotations

import functools


@functools.cache
def gpu_names() -> tuple[str, ...]:
    """The names of the visible GPUs on the active Keras backend (empty on a CPU machine)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        from poster_ml.quiet import silenced_stderr

        with silenced_stderr():  # The CUDA probe's notes on a machine without a GPU.
            gpus = tf.config.list_physical_devices("GPU")
        return tuple(
            tf.config.experimental.get_device_details(gpu).get("device_name", "unknown")
            for gpu in gpus
        )
    if backend == "torch":
        import torch

        return tuple(
            torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())
        )
    if backend == "jax":
        import jax

        return tuple(device.device_kind for device in jax.devices() if device.platform == "gpu")
    return ()


def has_gpu() -> bool:
    """Whether a GPU is visible to the active Keras backend."""
    return bool(gpu_names())


def device_info() -> dict[str, str]:
    """Device type, GPU name and count, and library versions, for run tags."""
    import keras

    names = gpu_names()
    info = {
        "device": "GPU" if names else "CPU",
        "gpu_name": ", ".join(sorted(set(names))) or "none",
        "gpu_count": str(len(names)),
        "keras_backend": keras.backend.backend(),
        "keras_version": keras.__version__,
    }
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        info["tensorflow_version"] = tf.__version__
    return info
