"""The `poster-ml` command: one subcommand per MLproject entry point, options one to one."""

from __future__ import annotations

import argparse
import sys

from poster_ml.config import PreprocessConfig, WorkflowConfig, add_config_arguments, config_from_arguments
from poster_ml.errors import PosterMLError


def run_preprocess(arguments: argparse.Namespace) -> None:
    from poster_ml import tracking
    from poster_ml.preprocess import prepare, summary_text

    config = config_from_arguments(arguments, PreprocessConfig)
    with tracking.step_run("preprocess", {"preprocess": config}, seed=config.seed):
        dataset = prepare(config)
        tracking.log_preprocess(dataset)
    print(summary_text(dataset))


def run_main(arguments: argparse.Namespace) -> None:
    from poster_ml.workflow import run_workflow

    run_workflow(config_from_arguments(arguments, WorkflowConfig))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poster-ml", description="Fresh or rotten from a movie poster: prepare, train, evaluate, register.")
    commands = parser.add_subparsers(dest="command", required=True)

    preprocess = commands.add_parser("preprocess", help="validate, decode, resize, de-duplicate and split posters")
    add_config_arguments(preprocess, PreprocessConfig)
    preprocess.set_defaults(handler=run_preprocess)

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
