"""The `poster-ml` command: one subcommand per MLproject entry point, options one to one."""

from __future__ import annotations

import argparse
import sys

from poster_ml.config import (
    AugmentConfig,
    EvaluateConfig,
    PreprocessConfig,
    RegisterConfig,
    TrainConfig,
    WorkflowConfig,
    add_config_arguments,
    config_from_arguments,
    parse_overrides,
    split_overrides,
    train_config,
    with_overrides,
)
from poster_ml.errors import PosterMLError


def run_preprocess(arguments: argparse.Namespace) -> None:
    from poster_ml.steps import preprocess_step

    preprocess_step(config_from_arguments(arguments, PreprocessConfig))


def run_train(arguments: argparse.Namespace) -> None:
    from poster_ml.steps import train_step

    train_overrides, augment_overrides = split_overrides(parse_overrides(arguments.overrides), TrainConfig, AugmentConfig)
    config = train_config(arguments.profile, train_overrides)
    augment = with_overrides(AugmentConfig(), augment_overrides)
    train_step(config, augment, arguments.profile, arguments.data, arguments.variants)


def run_evaluate(arguments: argparse.Namespace) -> None:
    from poster_ml.steps import evaluate_step

    evaluate_step(config_from_arguments(arguments, EvaluateConfig))


def run_register(arguments: argparse.Namespace) -> None:
    from poster_ml.steps import register_step

    register_step(config_from_arguments(arguments, RegisterConfig))


def run_main(arguments: argparse.Namespace) -> None:
    from poster_ml.workflow import run_workflow

    run_workflow(config_from_arguments(arguments, WorkflowConfig))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poster-ml", description="Fresh or rotten from a movie poster: prepare, train, evaluate, register.")
    commands = parser.add_subparsers(dest="command", required=True)

    preprocess = commands.add_parser("preprocess", help="validate, decode, resize, de-duplicate and split posters")
    add_config_arguments(preprocess, PreprocessConfig)
    preprocess.set_defaults(handler=run_preprocess)

    train = commands.add_parser("train", help="train the study's variants, one nested MLflow run each")
    train.add_argument("--profile", default="full", help="'full' (the study's settings) or 'quick' (a 2-core laptop, minutes)")
    train.add_argument("--data", default="data/prepared", help="prepared dataset; the synthetic default is prepared there if missing")
    train.add_argument("--variants", default="all", help="comma-separated variant names, or 'all'")
    train.add_argument("--overrides", default="", help="settings as 'name=value ...', e.g. 'max_epochs=3 weights=none zoom=0.2'")
    train.set_defaults(handler=run_train)

    evaluate = commands.add_parser("evaluate", help="test metrics with intervals, curves, class activation maps, the results table")
    add_config_arguments(evaluate, EvaluateConfig)
    evaluate.set_defaults(handler=run_evaluate)

    register = commands.add_parser("register", help="register the best GPU-trained variant in the Model Registry")
    add_config_arguments(register, RegisterConfig)
    register.set_defaults(handler=run_register)

    main = commands.add_parser("main", help="run every step on the embedded default (or your posters), skipping unchanged ones")
    add_config_arguments(main, WorkflowConfig)
    main.set_defaults(handler=run_main)
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        arguments.handler(arguments)
    except PosterMLError as error:
        print(f"poster-ml {arguments.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
