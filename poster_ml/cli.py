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
from poster_ml.errors import DatasetError, PosterMLError


def run_preprocess(arguments: argparse.Namespace) -> None:
    from poster_ml import tracking
    from poster_ml.preprocess import prepare, summary_text

    config = config_from_arguments(arguments, PreprocessConfig)
    with tracking.step_run("preprocess", {"preprocess": config}, seed=config.seed):
        dataset = prepare(config)
        tracking.log_preprocess(dataset)
    print(summary_text(dataset))


def run_train(arguments: argparse.Namespace) -> None:
    from poster_ml import tracking
    from poster_ml.preprocess import load_or_prepare_default
    from poster_ml.report import leaderboard, markdown_table
    from poster_ml.training import device_info, train_variant
    from poster_ml.variants import get_variants

    train_overrides, augment_overrides = split_overrides(parse_overrides(arguments.overrides), TrainConfig, AugmentConfig)
    config = train_config(arguments.profile, train_overrides)
    augment = with_overrides(AugmentConfig(), augment_overrides)
    variants = get_variants(arguments.variants)
    data = load_or_prepare_default(arguments.data, config.image_size, config.synthetic_count, config.seed)
    configs = {"train": config, "augment": augment}
    with tracking.step_run("train", configs, seed=config.seed) as parent:
        mlflow_tags = device_info() | {"profile": arguments.profile}
        tracking.set_tags(mlflow_tags)
        tracking.dataset_input(data, context="training")
        rows = []
        for variant in variants:
            print(f"training {variant.name}: {variant.description}")
            with tracking.variant_run(variant.name, parent, mlflow_tags):
                trained = train_variant(variant, data, config, augment, [tracking.epoch_logger()])
                rows.append(tracking.log_trained_variant(trained, data, configs))
        board = leaderboard(rows)
        tracking.log_leaderboard(board)
    print(markdown_table(board.drop(columns="model_uri")))


def run_evaluate(arguments: argparse.Namespace) -> None:
    from poster_ml import plots, tracking
    from poster_ml.dataset import load_prepared
    from poster_ml.evaluate import evaluate_model
    from poster_ml.report import markdown_table, results_table

    config = config_from_arguments(arguments, EvaluateConfig)
    with tracking.step_run("evaluate", {"evaluate": config}, seed=config.seed):
        if config.model_uri:
            train = None
            targets = [tracking.EvaluationTarget(config.model_uri, config.model_uri, None, {})]
        else:
            train = tracking.find_train_run(config.train_run)
            targets = tracking.evaluation_targets(train)
            tracking.set_tags({"train_run_id": train.info.run_id})
        data = load_prepared(config.data or (train.data.tags.get("data_path", "data/prepared") if train else "data/prepared"))
        if train is not None and train.data.tags.get("dataset_digest") != data.digest:
            raise DatasetError(f"the prepared data in {data.path} changed since train run {train.info.run_id}; pass --data")
        tracking.dataset_input(data, context="evaluation")
        rows, curves = [], {}
        for target in targets:
            print(f"evaluating {target.name}")
            model = tracking.load_keras_model(target.model_uri)
            result = evaluate_model(model, data, config, with_activations=target.name == config.activations_variant or len(targets) == 1)
            tracking.log_model_evaluation(result, target.run_id)
            rows.append({"variant": target.name, **target.summary, **result.metrics})
            curves[target.name] = result.roc
        table = results_table(rows)
        roc_figure = plots.roc_curves(curves, "ROC curves on the test split")
        tracking.log_results_table(table, roc_figure, [run_id for run_id in (train.info.run_id if train else None, tracking.active_run_id()) if run_id])
    print(markdown_table(table))


def run_register(arguments: argparse.Namespace) -> None:
    from poster_ml import tracking
    from poster_ml.registry import register_best

    config = config_from_arguments(arguments, RegisterConfig)
    with tracking.step_run("register", {"register": config}, seed=0):
        version = register_best(config)
        tracking.set_tags({"registered_model": config.model_name, "registered_version": str(version.version)})
    print(f"registered {config.model_name} version {version.version} ({version.tags.get('variant')}, {version.tags.get('ranked_by')} {float(version.tags.get('score')):.3f}) as @{config.alias}")
    print(f"serve it with: mlflow models serve -m models:/{config.model_name}@{config.alias} --env-manager local")


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
