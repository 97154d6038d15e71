"""The configuration of what uses a trained model, and of the team's tracking server:
`serve`, `server` and `predict` (config.py holds the pipeline's steps)."""

from __future__ import annotations

import dataclasses

from poster_ml.config.settings import Checked, between, one_of, setting


@dataclasses.dataclass(frozen=True)
class ServeConfig(Checked):
    model: str = setting(
        "models:/poster-ml@champion", "model to serve: a models:/ or runs:/ URI, or a local folder"
    )
    host: str = setting("127.0.0.1", "address to listen on; 0.0.0.0 for every interface")
    port: int = setting(5001, "port to listen on", between(1, 65535))
    workers: int = setting(
        1, "server processes, each with its own copy of the model", between(1, 64)
    )
    max_request_mb: int = setting(
        20, "largest request body in MiB; a larger one is answered 413 unread", between(1, 1024)
    )


@dataclasses.dataclass(frozen=True)
class ServerConfig(Checked):
    backend_store_uri: str = setting(
        "postgresql://mlflow@127.0.0.1:5432/mlflow",
        "the runs database (PostgreSQL), which only the server reaches",
    )
    auth_database_uri: str = setting(
        "postgresql://mlflow@127.0.0.1:5432/mlflow_auth",
        "the users and permissions database, apart from the runs",
    )
    artifacts_destination: str = setting(
        "./mlartifacts",
        "where the server keeps artifacts: a folder, or s3://bucket/path and the like",
    )
    host: str = setting("127.0.0.1", "address to listen on; behind a TLS proxy for a team")
    port: int = setting(5000, "port to listen on", between(1, 65535))
    default_permission: str = setting(
        "NO_PERMISSIONS",
        "what a user may do with what no one granted them",
        one_of("NO_PERMISSIONS", "READ", "EDIT", "MANAGE"),
    )
    workers: int = setting(2, "server processes", between(1, 64))
    auth_cache_seconds: int = setting(
        60,
        "seconds each server process trusts a password it verified (0 verifies every request)",
        between(0, 3600),
    )


@dataclasses.dataclass(frozen=True)
class PredictConfig(Checked):
    model: str = setting(
        "models:/poster-ml@champion",
        "model to score with: a models:/ or runs:/ URI, or a local folder",
    )
    paths: str = setting(
        "",
        "poster files and folders to score, separated by spaces (positional on the command line)",
    )
    out: str = setting(
        "predictions.csv", "the predictions CSV; rejects go beside it as <name>.rejects.csv"
    )
    cam: str = setting(
        "", "folder for one class-activation-map overlay per poster; empty draws none"
    )
    batch_size: int = setting(64, "posters decoded and scored at a time", between(1, 4096))
    data: str = setting(
        "",
        "score a prepared dataset's test split instead of files: a folder, "
        "runs:/<preprocess run id>/prepared or 'latest'",
    )
