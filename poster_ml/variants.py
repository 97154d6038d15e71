"""The study's eight model variants, defined in one place.

Every model takes float images in [0, 255] of shape (size, size, 3) and does its own
input scaling (1/255 for the CNNs, each pretrained base's own ImageNet preprocessing),
so that training, evaluation and serving feed it the same decoded pixels. A variant is
a base (the convolutional part, ending at the layer class activation maps read) and a
head; adding a ninth variant is one more `Variant(...)` entry.

Only Keras 3 APIs are used here, so the models run on the TensorFlow, JAX and PyTorch
backends alike.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Callable

import keras
from keras import layers

from poster_ml.errors import ConfigError, WeightsUnavailableError


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


PRETRAINED_BASES = {
    "vgg16": PretrainedBase(keras.applications.VGG16, CaffePreprocessing, r"block\d_pool", "block5_conv3"),
    "inception_resnet_v2": PretrainedBase(
        keras.applications.InceptionResNetV2, lambda: layers.Rescaling(1 / 127.5, offset=-1),
        r"mixed_\w+|block\d+_\d+_ac|conv_7b_ac", "conv_7b_ac",
    ),
    "inception_v3": PretrainedBase(keras.applications.InceptionV3, lambda: layers.Rescaling(1 / 127.5, offset=-1), r"mixed\d+", "mixed10"),
}


OPTIMIZERS = {"rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam}


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    description: str
    base: str  # "cnn3", "cnn4" or a key of PRETRAINED_BASES.
    head: Callable  # (features, dropout) -> probability of fresh
    optimizer: str
    learning_rate: float
    epochs: int
    augment: bool
    dropout: float
    unfreeze_blocks: int = 0  # Top blocks of a pretrained base that train; 0 keeps it frozen.
    cached_features: bool = False  # Train the head on the frozen base's features, computed once.

    @property
    def pretrained(self) -> bool:
        return self.base in PRETRAINED_BASES

    def make_optimizer(self) -> keras.optimizers.Optimizer:
        """A fresh instance of the study's optimiser at its learning rate."""
        return OPTIMIZERS[self.optimizer](learning_rate=self.learning_rate)

    @property
    def cam_layer(self) -> str:
        return PRETRAINED_BASES[self.base].cam_layer if self.pretrained else f"conv{self.base[-1]}"


def dense_head(units: tuple[int, ...], flatten: str = "flatten") -> Callable:
    """Flatten (or global average pooling), Dense-ReLU layers each followed by dropout, one sigmoid unit."""

    def head(features, dropout: float):
        x = layers.Flatten(name="flatten")(features) if flatten == "flatten" else layers.GlobalAveragePooling2D(name="global_average_pooling")(features)
        for index, width in enumerate(units, start=1):
            x = layers.Dense(width, activation="relu", name=f"dense{index}")(x)
            if dropout > 0:
                x = layers.Dropout(dropout, name=f"dropout{index}")(x)
        # The output stays float32 under mixed precision, for a stable sigmoid and loss.
        return layers.Dense(1, activation="sigmoid", dtype="float32", name="fresh_probability")(x)

    return head


VARIANTS = {
    variant.name: variant
    for variant in (
        Variant("basic_cnn", "Conv16-64-128 with max pooling, Dense512", "cnn3", dense_head((512,)), "rmsprop", 1e-3, 15, False, 0.0),
        Variant("regularized_cnn", "four conv blocks, Dense512-Dropout-Dense512-Dropout", "cnn4", dense_head((512, 512)), "rmsprop", 1e-3, 15, False, 0.3),
        Variant("regularized_cnn_aug", "as regularized_cnn, with augmentation", "cnn4", dense_head((512, 512)), "rmsprop", 1e-4, 50, True, 0.3),
        Variant("vgg16_features", "frozen VGG16, head trained on cached features", "vgg16", dense_head((512, 512)), "rmsprop", 1e-4, 15, False, 0.3, cached_features=True),
        Variant("vgg16_features_aug", "frozen VGG16 on every augmented batch", "vgg16", dense_head((512, 512)), "rmsprop", 2e-5, 50, True, 0.3),
        Variant("vgg16_finetune_aug", "VGG16 with blocks 4 and 5 trained", "vgg16", dense_head((512, 512)), "rmsprop", 1e-6, 50, True, 0.3, unfreeze_blocks=2),
        Variant("inception_resnet_v2_finetune_aug", "InceptionResNetV2 from block8_10 on, Flatten, Dense512", "inception_resnet_v2", dense_head((512,)), "rmsprop", 2e-5, 50, True, 0.0, unfreeze_blocks=1),
        Variant("inception_v3_finetune_aug", "InceptionV3 top two blocks, global average pooling, Dense256", "inception_v3", dense_head((256,), flatten="average"), "adam", 1e-6, 50, True, 0.1, unfreeze_blocks=2),
    )
}


def get_variants(names: str) -> list[Variant]:
    """Variants by comma-separated names, or all eight for 'all'."""
    if names.strip() in ("", "all"):
        return list(VARIANTS.values())
    chosen = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    return [VARIANTS[name] for name in chosen]


def build_model(variant: Variant, image_size: int, dropout: float | None = None, unfreeze_blocks: int | None = None, weights: str = "none") -> keras.Model:
    """Builds the full model, images in, probability of fresh out.

    `dropout` and `unfreeze_blocks` default to the study's values; Optuna tunes both.
    """
    dropout = variant.dropout if dropout is None else dropout
    unfreeze_blocks = variant.unfreeze_blocks if unfreeze_blocks is None else unfreeze_blocks
    inputs = keras.Input((image_size, image_size, 3), name="image")
    features = build_base(variant, inputs, unfreeze_blocks, weights)
    return keras.Model(inputs, variant.head(features, dropout), name=variant.name)


def build_base(variant: Variant, inputs, unfreeze_blocks: int, weights: str):
    """The convolutional part, built inline so its layers stay reachable from `inputs`."""
    if variant.base == "cnn3":
        return conv_stack(inputs, (16, 64, 128))
    if variant.base == "cnn4":
        return conv_stack(inputs, (16, 64, 128, 128))
    return pretrained_base(variant.base, inputs, unfreeze_blocks, weights)


def conv_stack(inputs, filters: tuple[int, ...]):
    x = layers.Rescaling(1 / 255, name="rescale")(inputs)
    for index, count in enumerate(filters, start=1):
        x = layers.Conv2D(count, 3, activation="relu", name=f"conv{index}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{index}")(x)
    return x


def pretrained_base(name: str, inputs, unfreeze_blocks: int, weights: str):
    """A keras.applications base on `inputs`, frozen but for its top `unfreeze_blocks` blocks.

    Passing the preprocessed tensor as `input_tensor` puts the base's layers into the
    outer graph rather than nesting a model, so Grad-CAM can reach its last conv layer.
    """
    spec = PRETRAINED_BASES[name]
    x = spec.preprocessing()(inputs)
    base = load_application(spec.application, x, weights)
    block_ends = [index for index, layer in enumerate(base.layers) if re.fullmatch(spec.block_ends, layer.name)]
    if not 0 <= unfreeze_blocks < len(block_ends):
        raise ConfigError(f"unfreeze_blocks for {name} must be in [0, {len(block_ends) - 1}], got {unfreeze_blocks}")
    first_trainable = block_ends[-unfreeze_blocks - 1] + 1 if unfreeze_blocks else len(base.layers)
    for index, layer in enumerate(base.layers):
        # BatchNorm stays in inference mode even in unfrozen blocks: a non-trainable
        # BatchNormalization layer in Keras 3 uses its moving statistics.
        layer.trainable = index >= first_trainable and not isinstance(layer, layers.BatchNormalization)
    return base.output


def check_weights(variants: list[Variant], weights: str) -> None:
    """Loads each pretrained base's weights once up front (and so into Keras's cache), so a
    missing download stops the run in seconds rather than after the CNN variants trained."""
    for base in dict.fromkeys(variant.base for variant in variants if variant.pretrained):
        load_application(PRETRAINED_BASES[base].application, keras.Input((75, 75, 3)), weights)
    keras.backend.clear_session()


def load_application(application: Callable[..., keras.Model], input_tensor, weights: str) -> keras.Model:
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
            f"cannot download ImageNet weights for {application.__name__} ({str(error).splitlines()[0][:120]}); "
            "put the *_notop.h5 file in ~/.keras/models/ (or $KERAS_HOME/models/), or point the setting at it "
            "(--overrides \"weights=PATH\"), or train from scratch with weights=none"
        ) from None
