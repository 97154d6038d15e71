"""The train step: the study's variants, one nested run each, and the leaderboard."""

from __future__ import annotations

from poster_ml.config import AugmentConfig, TrainConfig
from poster_ml.data.prepare import load_or_prepare_default
from poster_ml.tables import leaderboard, markdown_table
from poster_ml.tracking import artifacts, runs


def train_step(config: TrainConfig, augment: AugmentConfig, profile: str, data_dir: str, variant_names: str):
    """Trains the variants, one nested run each, and returns the leaderboard."""
    from poster_ml.devices import device_info
    from poster_ml.models.bases import check_weights
    from poster_ml.models.fit import train_variant
    from poster_ml.models.variants import get_variants

    variants = get_variants(variant_names)
    check_weights([variant.base for variant in variants if variant.pretrained], config.weights)
    data = load_or_prepare_default(data_dir, config.image_size, config.synthetic_count, config.seed)
    configs = {"train": config, "augment": augment}
    with runs.step_run("train", configs, seed=config.seed) as parent:
        tags = device_info() | {"profile": profile}
        runs.set_tags(tags)
        artifacts.dataset_input(data, context="training")
        rows = []
        for variant in variants:
            print(f"training {variant.name}: {variant.description}")
            with runs.variant_run(variant.name, parent, tags):
                artifacts.dataset_input(data, context="training")
                trained = train_variant(variant, data, config, augment, [artifacts.epoch_logger()])
                rows.append(artifacts.log_trained_variant(trained, data, configs))
        board = leaderboard(rows)
        artifacts.log_leaderboard(board)
    print(markdown_table(board.drop(columns="model_uri")))
    return board
