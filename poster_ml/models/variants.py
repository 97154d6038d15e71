"""The study's eight model variants, defined in one table.

Every model takes float images in [0, 255] of shape (size, size, 3) and does its own
input scaling (1/255 for the CNNs, each pretrained base's own ImageNet preprocessing),
so that training, evaluation and serving feed it the same decoded pixels. A variant is
a base (the convolutional part, ending at the layer class activation maps read) and a
head; adding a ninth variant is one more `Variant(...)` entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import keras
from keras import layers

from poster_ml.errors import ConfigError
from poster_ml.models.bases import PRETRAINED_BASES, pretrained_base

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

    def make_optimizer(self, learning_rate: float | None = None) -> keras.optimizers.Optimizer:
        """A fresh instance of the study's optimiser, at its learning rate unless one is given."""
        return OPTIMIZERS[self.optimizer](
            learning_rate=self.learning_rate if learning_rate is None else learning_rate
        )

    def resolve(self, dropout: float | None, unfreeze_blocks: int | None) -> tuple[float, int]:
        """The dropout and unfreeze depth to build with: None means the variant's own value."""
        return (
            self.dropout if dropout is None else dropout,
            self.unfreeze_blocks if unfreeze_blocks is None else unfreeze_blocks,
        )

    @property
    def cam_layer(self) -> str:
        return PRETRAINED_BASES[self.base].cam_layer if self.pretrained else f"conv{self.base[-1]}"


HEAD_FIRST_LAYERS = ("flatten", "global_average_pooling")  # dense_head's first layer, by kind.


def head_first_layer(model: keras.Model) -> keras.layers.Layer:
    """The first layer of a model's dense head, Flatten or global average pooling: the base's
    features go in there (what a cached-features variant caches)."""
    names = {layer.name for layer in model.layers}
    name = next((name for name in HEAD_FIRST_LAYERS if name in names), None)
    if name is None:
        raise ValueError(f"model {model.name} has no dense head ({' or '.join(HEAD_FIRST_LAYERS)})")
    return model.get_layer(name)


def dense_head(units: tuple[int, ...], flatten: str = "flatten") -> Callable:
    """Flatten (or global average pooling), Dense-ReLU layers each followed by dropout, one sigmoid unit."""

    def head(features, dropout: float):
        x = (
            layers.Flatten(name="flatten")(features)
            if flatten == "flatten"
            else layers.GlobalAveragePooling2D(name="global_average_pooling")(features)
        )
        for index, width in enumerate(units, start=1):
            x = layers.Dense(width, activation="relu", name=f"dense{index}")(x)
            if dropout > 0:
                x = layers.Dropout(dropout, name=f"dropout{index}")(x)
        # The output stays float32 under mixed precision, for a stable sigmoid and loss.
        return layers.Dense(1, activation="sigmoid", dtype="float32", name=OUTPUT_LAYER)(x)

    return head


OUTPUT_LAYER = "fresh_probability"
"""The one sigmoid unit; explanations take the gradient of its pre-activation."""

VARIANTS = {
    variant.name: variant
    for variant in (
        Variant(
            name="basic_cnn",
            description="Conv16-64-128 with max pooling, Dense512",
            base="cnn3",
            head=dense_head((512,)),
            optimizer="rmsprop",
            learning_rate=1e-3,
            epochs=15,
            augment=False,
            dropout=0.0,
        ),
        Variant(
            name="regularized_cnn",
            description="four conv blocks, Dense512-Dropout-Dense512-Dropout",
            base="cnn4",
            head=dense_head((512, 512)),
            optimizer="rmsprop",
            learning_rate=1e-3,
            epochs=15,
            augment=False,
            dropout=0.3,
        ),
        Variant(
            name="regularized_cnn_aug",
            description="as regularized_cnn, with augmentation",
            base="cnn4",
            head=dense_head((512, 512)),
            optimizer="rmsprop",
            learning_rate=1e-4,
            epochs=50,
            augment=True,
            dropout=0.3,
        ),
        Variant(
            name="vgg16_features",
            description="frozen VGG16, head trained on cached features",
            base="vgg16",
            head=dense_head((512, 512)),
            optimizer="rmsprop",
            learning_rate=1e-4,
            epochs=15,
            augment=False,
            dropout=0.3,
            cached_features=True,
        ),
        Variant(
            name="vgg16_features_aug",
            description="frozen VGG16 on every augmented batch",
            base="vgg16",
            head=dense_head((512, 512)),
            optimizer="rmsprop",
            learning_rate=2e-5,
            epochs=50,
            augment=True,
            dropout=0.3,
        ),
        Variant(
            name="vgg16_finetune_aug",
            description="VGG16 with blocks 4 and 5 trained",
            base="vgg16",
            head=dense_head((512, 512)),
            optimizer="rmsprop",
            learning_rate=1e-6,
            epochs=50,
            augment=True,
            dropout=0.3,
            unfreeze_blocks=2,
        ),
        # The study tried InceptionResNetV2 twice; this follows its second, fully written
        # attempt (unfrozen from block8_10 on, Adam 1e-6). Tuning explores the rest.
        Variant(
            name="inception_resnet_v2_finetune_aug",
            description="InceptionResNetV2 from block8_10 on (the study's second attempt), Flatten, Dense512",
            base="inception_resnet_v2",
            head=dense_head((512,)),
            optimizer="adam",
            learning_rate=1e-6,
            epochs=50,
            augment=True,
            dropout=0.0,
            unfreeze_blocks=1,
        ),
        Variant(
            name="inception_v3_finetune_aug",
            description="InceptionV3 top two blocks, global average pooling, Dense256",
            base="inception_v3",
            head=dense_head((256,), flatten="average"),
            optimizer="adam",
            learning_rate=1e-6,
            epochs=50,
            augment=True,
            dropout=0.1,
            unfreeze_blocks=2,
        ),
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


SMALLEST_BASE_INPUT = {"vgg16": 32, "inception_v3": 75, "inception_resnet_v2": 75}
"""The smallest input each Keras application accepts without its top."""

CONV_FILTERS = {"cnn3": (16, 64, 128), "cnn4": (16, 64, 128, 128)}


def smallest_image_size(variant: Variant) -> int:
    """The smallest poster side a variant can be built at: each conv block of a CNN takes
    two pixels (a 3 x 3 valid convolution) and halves the rest (2 x 2 pooling)."""
    if variant.pretrained:
        return SMALLEST_BASE_INPUT[variant.base]
    size = 1
    for _ in CONV_FILTERS[variant.base]:
        size = 2 * size + 2
    return size


def check_image_size(variants: list[Variant], image_size: int) -> None:
    """Refuses, before any work, a variant that cannot be built at the prepared size."""
    too_small = [
        f"{variant.name} needs at least {smallest_image_size(variant)} px"
        for variant in variants
        if image_size < smallest_image_size(variant)
    ]
    if too_small:
        raise ConfigError(
            f"the prepared posters are {image_size} px: {'; '.join(too_small)}; prepare them larger (preprocess --size) or leave those variants out"
        )


def build_model(
    variant: Variant,
    image_size: int,
    dropout: float | None = None,
    unfreeze_blocks: int | None = None,
    weights: str = "none",
) -> keras.Model:
    """Builds the full model, images in, probability of fresh out.

    `dropout` and `unfreeze_blocks` default to the study's values; Optuna tunes both.
    """
    dropout, unfreeze_blocks = variant.resolve(dropout, unfreeze_blocks)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    features = build_base(variant, inputs, unfreeze_blocks, weights)
    return keras.Model(inputs, variant.head(features, dropout), name=variant.name)


def build_base(variant: Variant, inputs, unfreeze_blocks: int, weights: str):
    """The convolutional part, built inline so its layers stay reachable from `inputs`."""
    if variant.base in CONV_FILTERS:
        return conv_stack(inputs, CONV_FILTERS[variant.base])
    return pretrained_base(variant.base, inputs, unfreeze_blocks, weights)


def conv_stack(inputs, filters: tuple[int, ...]):
    x = layers.Rescaling(1 / 255, name="rescale")(inputs)
    for index, count in enumerate(filters, start=1):
        x = layers.Conv2D(count, 3, activation="relu", name=f"conv{index}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{index}")(x)
    return x
