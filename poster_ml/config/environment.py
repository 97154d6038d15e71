"""Settings read from the environment: every variable the package reads or hands on to a
process it starts, in one place (the manual's settings reference lists `VARIABLES`).

The rest of the package asks these functions; only this module touches `os.environ`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

TRUE = ("1", "true", "yes")
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "poster-ml"

VARIABLES = {
    "MLFLOW_TRACKING_URI": "where runs go (default `sqlite:///mlflow.db` in the working directory); Optuna's studies go beside a local store",
    "MLFLOW_EXPERIMENT_NAME": "the experiment of a step run outside `mlflow run` (default `poster-ml`)",
    "MLFLOW_RUN_ID": "set by `mlflow run`: the step continues that run",
    "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "`false` stops the train and evaluate runs' system metrics",
    "POSTER_ML_VERBOSE": "`1`: every table, epoch and library note, as `--verbose`; `main` hands it to its steps",
    "POSTER_ML_QUIET": "`1`: only warnings and errors, as `--quiet`",
    "POSTER_ML_DATA_CACHE": "the cache's root (default `~/.cache/poster-ml`): fetched posters in `posters/`, downloaded datasets in `prepared/<digest>`",
    "POSTER_ML_CPU_REPLICAS": "splits the CPU into that many logical devices for a distributed training test",
    "POSTER_ML_WARP_THREADS": "threads that warp augmented posters (default: every core)",
    "POSTER_ML_ADMIN_PASSWORD": "the team server's admin password (no default: the server does not start without it)",
    "POSTER_ML_MODEL_PATH": "set by `poster-ml serve` for its server processes: the downloaded model",
    "POSTER_ML_MAX_REQUEST_BYTES": "set by `poster-ml serve` from `--max-request-mb`: the largest request body",
    "POSTER_ML_PAGE_FACTS": "set by `poster-ml serve`: a JSON file of what the page at / says of the model (which version, its test AUC, its limits)",
}


def read(name: str, default: str = "") -> str:
    if name not in VARIABLES:
        raise KeyError(f"{name} is not one of the settings in config/environment.py")
    return os.environ.get(name) or default


def flag(name: str) -> bool:
    return read(name).lower() in TRUE


def tracking_uri() -> str:
    return read("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI)


def experiment_name() -> str:
    return read("MLFLOW_EXPERIMENT_NAME", DEFAULT_EXPERIMENT)


def project_run_id() -> str | None:
    """The run `mlflow run` made for this step, if it was started that way."""
    return read("MLFLOW_RUN_ID") or None


def system_metrics_enabled() -> bool:
    return read("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "true").lower() not in ("false", "0")


def is_verbose() -> bool:
    return flag("POSTER_ML_VERBOSE")


def is_quiet() -> bool:
    return flag("POSTER_ML_QUIET") and not is_verbose()


def hand_on_console_mode(verbose: bool, quiet: bool) -> None:
    """Makes the processes this one starts (the steps `main` runs, a server) print as
    this one does."""
    if quiet and not verbose:
        os.environ["POSTER_ML_QUIET"] = "1"
    if verbose:
        os.environ["POSTER_ML_VERBOSE"] = "1"


def quiet_libraries() -> None:
    """What TensorFlow's C++ logging and MLflow print, unless the user set it: errors that
    end a run, no notes, no progress bars. Set before either library is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow's own INFO lines ("Validating input example ...", "Creating initial tables").
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def cache_root() -> Path:
    return Path(read("POSTER_ML_DATA_CACHE") or Path.home() / ".cache" / "poster-ml")


def cpu_replicas() -> int:
    return int(read("POSTER_ML_CPU_REPLICAS", "0"))


def warp_threads() -> int:
    return int(read("POSTER_ML_WARP_THREADS") or os.cpu_count() or 1)


def admin_password() -> str:
    # MLflow's own name for it, for a user who set that one.
    return read("POSTER_ML_ADMIN_PASSWORD") or os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD", "")


def served_model_path() -> str:
    path = read("POSTER_ML_MODEL_PATH")
    if not path:
        raise KeyError("POSTER_ML_MODEL_PATH is not set: start the server with `poster-ml serve`")
    return path


def page_facts_path() -> str:
    return read("POSTER_ML_PAGE_FACTS")


def max_request_bytes() -> int:
    return int(read("POSTER_ML_MAX_REQUEST_BYTES", str(20 * 2**20)))


def is_set(name: str) -> bool:
    """Whether a variable of another program (MLflow's, the shell's) is set."""
    return bool(os.environ.get(name))


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with `extra` added, for a process it starts."""
    return dict(os.environ) | dict(extra)


def python_path_with(folder: str) -> str:
    """PYTHONPATH for a child process that imports from `folder` first."""
    return os.pathsep.join([folder, os.environ.get("PYTHONPATH", "")])


def put_first_on_path(folder: str) -> None:
    """Makes `folder` the first place this process and its children look for commands."""
    os.environ["PATH"] = os.pathsep.join([folder, os.environ.get("PATH", "")])
