"""The team server: MLflow's own tracking server with a PostgreSQL store, artifacts served
through it, and its basic authentication (users and permissions in a database of their
own). A thin wrapper: it writes the auth settings file, prints the command, runs it.

The admin password is the operator's: POSTER_ML_ADMIN_PASSWORD (or MLflow's own
MLFLOW_AUTH_ADMIN_PASSWORD). There is no default; without one the server does not start.
Clients use only the http:// URI with MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD, never the database URIs.
"""

from __future__ import annotations

import logging
import secrets
import shlex
import sys
import tempfile
from pathlib import Path

from poster_ml import databases
from poster_ml.config import ServerConfig, environment
from poster_ml.errors import ConfigError
from poster_ml.processes import run_in_foreground

log = logging.getLogger(__name__)


def admin_password() -> str:
    password = environment.admin_password()
    if not password:
        raise ConfigError(
            "no admin password: set POSTER_ML_ADMIN_PASSWORD (there is no default); the server does not start without one"
        )
    if len(password) < 12:
        raise ConfigError("the admin password must have at least 12 characters")
    return password


def check_databases(config: ServerConfig, timeout_seconds: int = 5) -> None:
    """Opens each PostgreSQL database once before the server starts: a missing role or
    database is one line within seconds, rather than MLflow retrying it for minutes."""
    for purpose, uri in (("runs", config.backend_store_uri), ("users", config.auth_database_uri)):
        if databases.is_postgresql(uri):
            databases.check(uri, purpose, timeout_seconds)


def auth_settings(config: ServerConfig) -> str:
    """MLflow's basic-auth settings. A password is checked with a deliberately slow hash,
    and without MLflow's credential cache every request pays for it again (a training sends
    one for each batch of metrics and each artifact). The cache trusts a verified password
    for `auth_cache_seconds`, so a changed or revoked one may still work that long on
    another server process."""
    return (
        "[mlflow]\n"
        f"default_permission = {config.default_permission}\n"
        f"database_uri = {config.auth_database_uri}\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        f"auth_cache_ttl_seconds = {config.auth_cache_seconds}\n"
    )


def server_step(config: ServerConfig) -> int:
    password = admin_password()
    check_databases(config)
    with tempfile.TemporaryDirectory() as folder:
        settings = Path(folder) / "basic_auth.ini"
        settings.write_text(auth_settings(config))
        settings.chmod(0o600)
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--app-name",
            "basic-auth",
            "--backend-store-uri",
            config.backend_store_uri,
            "--serve-artifacts",
            "--artifacts-destination",
            config.artifacts_destination,
            "--host",
            config.host,
            "--port",
            str(config.port),
            "--workers",
            str(config.workers),
        ]
        log.info(f"running: MLFLOW_AUTH_CONFIG_PATH={settings} {shlex.join(command)}")
        variables = environment.child_environment(
            {"MLFLOW_AUTH_CONFIG_PATH": str(settings), "MLFLOW_AUTH_ADMIN_PASSWORD": password}
        )
        if not environment.is_set("MLFLOW_FLASK_SERVER_SECRET_KEY"):
            # The CSRF key of the UI's forms; several servers behind one proxy need one shared key.
            log.info(
                "MLFLOW_FLASK_SERVER_SECRET_KEY is not set: using a random key for this start (set one for several servers)"
            )
            variables["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secrets.token_hex(32)
        return run_in_foreground(command, variables)
