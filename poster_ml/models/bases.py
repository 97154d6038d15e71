"""The pretrained bases (VGG16, InceptionV3, InceptionResNetV2): their ImageNet input
preprocessing, their block boundaries for unfreezing, their CAM layer, and loading their
weights from ImageNet, a local file, or nowhere, and the weights (and so the learning rate)
each base of a training really gets.

Only Keras 3 APIs are used here, so the bases run on the TensorFlow, JAX and PyTorch
backends alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import re
from collections.abc import Callable
from pathlib import Path

import keras
from keras import layers

from poster_ml.config import TrainConfig
from poster_ml.errors import ConfigError, WeightsUnavailableError, first_line

log = logging.getLogger(__name__)


@keras.saving.register_keras_serializable(package="poster_ml")
class CaffePreprocessing(layers.Layer):
    """VGG16's ImageNet preprocessing: RGB to BGR, then subtract the ImageNet channel means."""

    def call(self, images):
        means = keras.ops.convert_to_tensor([103.939, 116.779, 123.68], dtype=images.dtype)
        return keras.ops.flip(images, axis=-1) - means


@dataclasses.dataclass(frozen=True)
class PretrainedBase:
    application: Callable[..., keras.Model]
    preprocessing: Callable[[], layers.Layer]
    block_ends: str  # Regex of the layers that end each block, for unfreezing the top blocks.
    cam_layer: str
    max_unfreeze: int  # Deepest unfreeze tuning explores, in the base's own blocks.


PRETRAINED_BASES = {
    # VGG16: its five conv blocks, each ending in a pooling layer; all but the first may train.
    "vgg16": PretrainedBase(
        keras.applications.VGG16,
        CaffePreprocessing,
        r"block\d_pool",
        "block5_conv3",
        max_unfreeze=4,
    ),
    # InceptionResNetV2: each residual block (block35_*, block17_*, block8_*) and each
    # reduction (mixed_*) is one block, so the study's "from block8_10 on" is one block;
    # tuning explores up to its block8 group and the final conv (ten blocks).
    "inception_resnet_v2": PretrainedBase(
        keras.applications.InceptionResNetV2,
        lambda: layers.Rescaling(1 / 127.5, offset=-1),
        r"mixed_\w+|block\d+_\d+_ac|conv_7b_ac",
        "conv_7b_ac",
        max_unfreeze=10,
    ),
    # InceptionV3: its eleven mixed blocks, mixed0 to mixed10.
    "inception_v3": PretrainedBase(
        keras.applications.InceptionV3,
        lambda: layers.Rescaling(1 / 127.5, offset=-1),
        r"mixed\d+",
        "mixed10",
        max_unfreeze=10,
    ),
}


def pretrained_base(name: str, inputs, unfreeze_blocks: int, weights: str):
    """A keras.applications base on `inputs`, frozen but for its top `unfreeze_blocks` blocks.

    Passing the preprocessed tensor as `input_tensor` puts the base's layers into the
    outer graph rather than nesting a model, so Grad-CAM can reach its last conv layer.
    """
    spec = PRETRAINED_BASES[name]
    x = spec.preprocessing()(inputs)
    base = load_application(spec.application, x, weights)
    block_ends = [
        index
        for index, layer in enumerate(base.layers)
        if re.fullmatch(spec.block_ends, layer.name)
    ]
    if not 0 <= unfreeze_blocks < len(block_ends):
        raise ConfigError(
            f"unfreeze_blocks for {name} must be in [0, {len(block_ends) - 1}], got {unfreeze_blocks}"
        )
    first_trainable = block_ends[-unfreeze_blocks - 1] + 1 if unfreeze_blocks else len(base.layers)
    for index, layer in enumerate(base.layers):
        # BatchNorm stays in inference mode even in unfrozen blocks: a non-trainable
        # BatchNormalization layer in Keras 3 uses its moving statistics.
        layer.trainable = index >= first_trainable and not isinstance(
            layer, layers.BatchNormalization
        )
    return base.output


def check_weights(bases: list[str], weights: str) -> dict[str, str]:
    """Loads each named pretrained base's weights once up front (and so into Keras's cache),
    so a missing download stops the run in seconds rather than after the CNN variants
    trained. Returns the weights each base will get: with 'auto', ImageNet's where they
    are in Keras's cache or can be downloaded, else 'none' (random weights)."""
    resolved = {}
    for base in dict.fromkeys(bases):
        # Keras says "Downloading data from <URL>" on stdout; that is a detail, at DEBUG.
        said = io.StringIO()
        try:
            with contextlib.redirect_stdout(said):
                load_application(
                    PRETRAINED_BASES[base].application,
                    keras.Input((75, 75, 3)),
                    "imagenet" if weights == "auto" else weights,
                )
            resolved[base] = "imagenet" if weights == "auto" else weights
        except WeightsUnavailableError:
            if weights != "auto":
                raise
            resolved[base] = "none"
        finally:
            if said.getvalue().strip():
                log.debug(said.getvalue().strip())
    keras.backend.clear_session()
    return resolved


def load_application(
    application: Callable[..., keras.Model], input_tensor, weights: str
) -> keras.Model:
    """Builds a keras.applications base with 'imagenet', 'none' or a weights-file path."""
    if weights == "none":
        return application(include_top=False, weights=None, input_tensor=input_tensor)
    if weights != "imagenet":
        if not Path(weights).is_file():
            raise WeightsUnavailableError(f"no such weights file: {weights}")
        return application(include_top=False, weights=weights, input_tensor=input_tensor)
    try:
        return application(include_top=False, weights="imagenet", input_tensor=input_tensor)
    except Exception as error:  # Keras raises a bare Exception for a failed download.
        if "URL fetch failure" not in str(error) and not isinstance(error, OSError):
            raise
        raise WeightsUnavailableError(
            f"cannot download ImageNet weights for {application.__name__} ({first_line(error, 120)}); "
            "put the *_notop.h5 file in ~/.keras/models/ (or $KERAS_HOME/models/), or point the setting at it "
            '(--overrides "weights=PATH"), or train from scratch with weights=none'
        ) from None


CNN_LEARNING_RATE = 1e-3
"""The study's rate for its CNNs trained from scratch; a pretrained architecture that
starts from random weights gets it, since it is trained from scratch too (at the
fine-tuning rates it barely learns in the demo's epochs: benchmarks/RESULTS.md, random
weights at the fine-tuning rates)."""


def with_resolved_weights(variant, config: TrainConfig, weights: dict[str, str]):
    """The variant and config to train with, given the weights its base really gets."""
    if not variant.pretrained:
        return variant, config, {}
    resolved = weights[variant.base]
    tags = {"weights": resolved}
    if (
        resolved == "none"
        and config.learning_rate is None
        and variant.learning_rate < CNN_LEARNING_RATE
    ):
        log.debug(
            f"{variant.name} starts from random weights: it trains at the CNN learning rate {CNN_LEARNING_RATE:g}, not the fine-tuning rate {variant.learning_rate:g}"
        )
        variant = dataclasses.replace(variant, learning_rate=CNN_LEARNING_RATE)
        tags["learning_rate_source"] = "cnn_rate_for_random_weights"
    return variant, dataclasses.replace(config, weights=resolved), tags


def resolved_weights(variants: list, config: TrainConfig) -> dict[str, str]:
    """The weights each pretrained base really gets; with weights=auto, said in one line."""
    weights = check_weights(
        [variant.base for variant in variants if variant.pretrained], config.weights
    )
    if config.weights == "auto" and weights:
        log.info(
            "weights=auto: "
            + ", ".join(
                f"{base} {'ImageNet' if value == 'imagenet' else 'random (no ImageNet weights here)'}"
                for base, value in weights.items()
            )
            + (
                f"; from random weights a base trains at the CNN learning rate {CNN_LEARNING_RATE:g}"
                if "none" in weights.values()
                else ""
            )
        )
    return weights
