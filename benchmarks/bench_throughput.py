"""Training images per second per variant at 224 px on in-memory synthetic batches.

Meant for a GPU machine. It uses only Keras 3 and the variant definitions, so it runs on
the JAX or PyTorch backend where TensorFlow is not installed:

    KERAS_BACKEND=jax python benchmarks/bench_throughput.py [--steps 20] [--batch 32] [--dtype-policy mixed_float16] [--peak-tflops 989]

With --peak-tflops (the chip's dense half-precision peak), it also prints the fraction of
that peak reached, counting a training step as three times the forward pass's
multiply-adds in the convolution and dense layers.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

# Only poster_ml.models.variants is imported: it needs Keras alone, where other modules need TensorFlow.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras
import numpy as np

from poster_ml.models.variants import VARIANTS, build_model


def forward_flops(model: keras.Model) -> float:
    """Floating-point operations of one image's forward pass through the conv and dense layers."""
    total = 0.0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, channels_out = layer.output.shape
            kernel_height, kernel_width = layer.kernel_size
            total += (
                2.0
                * height
                * width
                * kernel_height
                * kernel_width
                * layer.input.shape[-1]
                * channels_out
                / layer.groups
            )
        elif isinstance(layer, keras.layers.Dense):
            total += 2.0 * layer.input.shape[-1] * layer.units
    return total


def throughput(
    name: str, size: int, batch: int, steps: int, dtype_policy: str
) -> tuple[float, float, float]:
    keras.utils.clear_session()
    keras.config.set_dtype_policy(dtype_policy)
    variant = VARIANTS[name]
    model = build_model(variant, size, weights="none")
    model.compile(
        optimizer=variant.make_optimizer(), loss="binary_crossentropy", jit_compile="auto"
    )
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    labels = rng.integers(0, 2, (batch,)).astype("float32")
    start = time.perf_counter()
    model.train_on_batch(images, labels)  # Compiles the step.
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        loss = model.train_on_batch(images, labels)
    float(np.asarray(loss))  # Waits for the device.
    return batch * steps / (time.perf_counter() - start), compile_seconds, 3 * forward_flops(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--variants", default="all")
    parser.add_argument(
        "--dtype-policy",
        default="float32",
        help="Keras dtype policy: float32, mixed_float16 (as training on a GPU), mixed_bfloat16",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=0.0,
        help="the chip's dense half-precision peak, for the fraction reached",
    )
    arguments = parser.parse_args()
    names = list(VARIANTS) if arguments.variants == "all" else arguments.variants.split(",")
    print(
        f"backend {keras.backend.backend()}, keras {keras.__version__}, tensorflow installed: {importlib.util.find_spec('tensorflow') is not None}, policy {arguments.dtype_policy}"
    )
    print(
        f"{'variant':<36} {'images/s':>10} {'ms/step':>9} {'compile s':>10} {'TFLOP/s':>9} {'of peak':>8}"
    )
    for name in names:
        rate, compile_seconds, flops_per_image = throughput(
            name, arguments.size, arguments.batch, arguments.steps, arguments.dtype_policy
        )
        achieved = rate * flops_per_image / 1e12
        share = f"{achieved / arguments.peak_tflops:8.1%}" if arguments.peak_tflops else f"{'-':>8}"
        print(
            f"{name:<36} {rate:10.1f} {1000 * arguments.batch / rate:9.1f} {compile_seconds:10.1f} {achieved:9.2f} {share}",
            flush=True,
        )


if __name__ == "__main__":
    main()
