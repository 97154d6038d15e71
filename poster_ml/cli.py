"""The `poster-ml` command: one subcommand per MLproject entry point, options one to one
with the fields of that step's config dataclass."""

from __future__ import annotations

import argparse
import sys
import traceback

from poster_ml.config import ENTRY_POINTS, AugmentConfig, TrainConfig, TrainStepConfig, train_config
from poster_ml.config.settings import (
    add_config_arguments,
    config_from_arguments,
    parse_overrides,
    split_overrides,
    with_overrides,
)
from poster_ml.errors import PosterMLError


def run_preprocess(arguments: argparse.Namespace) -> None:
    from poster_ml.steps.preprocess import preprocess_step

    preprocess_step(config_from_arguments(arguments, ENTRY_POINTS["preprocess"]))


def run_train(arguments: argparse.Namespace) -> None:
    from poster_ml.models.estimate import resolved_profile
    from poster_ml.steps.train import train_step

    step: TrainStepConfig = resolved_profile(
        config_from_arguments(arguments, ENTRY_POINTS["train"])
    )
    train_overrides, augment_overrides = split_overrides(
        parse_overrides(step.overrides), TrainConfig, AugmentConfig
    )
    if step.trials >= 0:
        train_overrides["trials"] = step.trials
    config = train_config(step.profile, train_overrides)
    augment = with_overrides(AugmentConfig(), augment_overrides)
    train_step(config, augment, step)


def run_evaluate(arguments: argparse.Namespace) -> None:
    from poster_ml.steps.evaluate import evaluate_step

    evaluate_step(config_from_arguments(arguments, ENTRY_POINTS["evaluate"]))


def run_register(arguments: argparse.Namespace) -> None:
    from poster_ml.steps.register import register_step

    register_step(config_from_arguments(arguments, ENTRY_POINTS["register"]))


def run_serve(arguments: argparse.Namespace) -> None:
    from poster_ml.steps.serve import serve_step

    code = serve_step(config_from_arguments(arguments, ENTRY_POINTS["serve"]))
    if code:
        raise PosterMLError(f"the server stopped with exit code {code}")


def run_server(arguments: argparse.Namespace) -> None:
    from poster_ml.steps.server import server_step

    code = server_step(config_from_arguments(arguments, ENTRY_POINTS["server"]))
    if code:
        raise PosterMLError(f"the tracking server stopped with exit code {code}")


def run_predict(arguments: argparse.Namespace) -> None:
    from poster_ml.steps.predict import predict_step

    # Paths may come positionally, as `poster-ml predict --model URI PATHS...`.
    if arguments.positional_paths:
        arguments.paths = " ".join([arguments.paths or "", *arguments.positional_paths]).strip()
    predict_step(config_from_arguments(arguments, ENTRY_POINTS["predict"]))


def run_main(arguments: argparse.Namespace) -> None:
    from poster_ml.steps.main import run_workflow

    run_workflow(config_from_arguments(arguments, ENTRY_POINTS["main"]))


COMMANDS = {
    # name: (handler, help); the config class of each is config.ENTRY_POINTS[name].
    "preprocess": (
        run_preprocess,
        "validate, decode, resize, de-duplicate and split posters",
    ),
    "train": (run_train, "train the study's variants, one nested MLflow run each"),
    "evaluate": (
        run_evaluate,
        "test metrics with intervals, curves, class activation maps, the results table",
    ),
    "register": (
        run_register,
        "register the best variant (by validation AUC) in the Model Registry",
    ),
    "predict": (
        run_predict,
        "score poster files and folders with a logged model; bad files go to a rejects CSV",
    ),
    "serve": (
        run_serve,
        "serve a model with MLflow's scoring server, guarded against oversized and echoed requests",
    ),
    "server": (
        run_server,
        "run the team's MLflow tracking server: PostgreSQL, served artifacts, basic authentication",
    ),
    "main": (
        run_main,
        "run every step on the embedded default (or your posters), skipping unchanged ones",
    ),
}


USES_TENSORFLOW = ("train", "evaluate", "register", "predict", "main")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poster-ml",
        description="Fresh or rotten from a movie poster: prepare, train, evaluate, register.",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="print the full tables, every epoch, every library's notes and progress bars, and on an error its causes (the full traceback) before the one-line message (also POSTER_ML_VERBOSE=1)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="print only warnings and errors (also POSTER_ML_QUIET=1)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (handler, help_text) in COMMANDS.items():
        command = commands.add_parser(name, help=help_text)
        command.add_argument(
            "--verbose",
            action="store_true",
            default=argparse.SUPPRESS,
            help="print the full tables, every epoch, every library's notes, and on an error its causes",
        )
        command.add_argument(
            "--quiet",
            action="store_true",
            default=argparse.SUPPRESS,
            help="print only warnings and errors",
        )
        add_config_arguments(command, ENTRY_POINTS[name])
        if name == "predict":
            command.add_argument(
                "positional_paths",
                nargs="*",
                metavar="PATHS",
                help="poster files and folders to score",
            )
        command.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    from poster_ml.config.environment import is_verbose
    from poster_ml.quiet import configure_output, import_tensorflow

    arguments = build_parser().parse_args(argv)
    configure_output(arguments.verbose, arguments.quiet)
    if arguments.command in USES_TENSORFLOW:
        import_tensorflow()
    try:
        arguments.handler(arguments)
    except Exception as error:
        from poster_ml.disk import disk_full_error, is_disk_full
        from poster_ml.tracking.store import store_error  # Imports MLflow: only here.

        # A tracking-store failure is one line too (the store's own message stays the cause).
        user_error = (
            error
            if isinstance(error, PosterMLError)
            else disk_full_error(error)
            if is_disk_full(error)
            else store_error(error)
        )
        if user_error is None:
            raise
        if arguments.verbose or is_verbose():
            traceback.print_exception(error, file=sys.stderr)
        print(f"poster-ml {arguments.command}: error: {user_error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
