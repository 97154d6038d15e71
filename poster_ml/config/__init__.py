"""Every setting of poster-ml, defined once: one frozen dataclass per concern.

`steps` holds the pipeline's steps and the training profiles, `serving` what uses a
trained model (predict, serve, the team's server), `settings` the strict machinery that
turns command-line and MLproject strings into checked values, and `mlproject` writes the
MLproject file from these classes.
"""

from poster_ml.config.serving import PredictConfig, ServeConfig, ServerConfig
from poster_ml.config.steps import (
    DEFAULT_DATA,
    PROFILES,
    AugmentConfig,
    EvaluateConfig,
    PreprocessConfig,
    RegisterConfig,
    TrainConfig,
    TrainStepConfig,
    WorkflowConfig,
    chosen_profile,
    train_config,
)

# Each MLproject entry point and `poster-ml` subcommand, and the config class it takes.
ENTRY_POINTS: dict[str, type] = {
    "preprocess": PreprocessConfig,
    "train": TrainStepConfig,
    "evaluate": EvaluateConfig,
    "register": RegisterConfig,
    "predict": PredictConfig,
    "serve": ServeConfig,
    "server": ServerConfig,
    "main": WorkflowConfig,
}

__all__ = [
    "DEFAULT_DATA",
    "ENTRY_POINTS",
    "PROFILES",
    "AugmentConfig",
    "EvaluateConfig",
    "PredictConfig",
    "PreprocessConfig",
    "RegisterConfig",
    "ServeConfig",
    "ServerConfig",
    "TrainConfig",
    "TrainStepConfig",
    "WorkflowConfig",
    "chosen_profile",
    "train_config",
]
