"""What went wrong, in one line a user can act on, told by the error's type and code, never
by the words of its message: a run that is not there, a store that cannot be reached, a
store that refuses the credentials, and a file the program could not read or write are
different messages; each names the store's URI without its password, or the file.
"""

from __future__ import annotations

import sqlite3
import traceback
from collections.abc import Iterator

import requests
import sqlalchemy.exc
from mlflow.exceptions import MlflowException

from poster_ml.config import environment
from poster_ml.databases import redacted
from poster_ml.errors import DatasetError, PosterMLError, TrackingStoreError, first_line

REFUSED_CODES = {"UNAUTHENTICATED", "PERMISSION_DENIED"}
REFUSED_STATUS = {401, 403}
# PostgreSQL's SQLSTATE class 28: invalid authorization (a wrong password, an unknown role).
REFUSED_SQLSTATE_CLASS = "28"
STUDIES_MESSAGES = {
    "refused": "the studies database (train's --storage) refused the credentials (give them in its URL); --verbose shows the cause",
    "unreachable": "cannot reach the studies database (train's --storage); is its server running? --verbose shows the cause",
}


def tracking_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri() or environment.tracking_uri()


def causes(error: BaseException) -> Iterator[BaseException]:
    """The error and the chain of errors behind it."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def store_error(error: Exception) -> PosterMLError | None:
    """The one-line error for a tracking-store or file failure, or None if `error` is not one."""
    uri = redacted(tracking_uri())
    refused = TrackingStoreError(
        f"the tracking store {uri} refused the credentials (set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD); --verbose shows the cause"
    )
    unreachable = TrackingStoreError(
        f"cannot reach the tracking store {uri}; is the server or database running? --verbose shows the cause"
    )
    for cause in causes(error):
        kind = classify(cause)
        if kind in STUDIES_MESSAGES and raised_by_optuna_storage(cause):
            return TrackingStoreError(STUDIES_MESSAGES[kind])
        if kind == "refused":
            return refused
        if kind == "unreachable":
            return unreachable
        if kind == "missing":
            return TrackingStoreError(f"{first_line(cause, 300)} (in the tracking store {uri})")
        if kind == "file" and isinstance(cause, OSError):
            return DatasetError(f"{cause.strerror or type(cause).__name__}: {cause.filename}")
    return None


def classify(error: BaseException) -> str | None:
    """refused, unreachable, missing (a run or model that is not there), file, or None."""
    if isinstance(error, MlflowException):
        if error.error_code in REFUSED_CODES or error.get_http_status_code() in REFUSED_STATUS:
            return "refused"
        return "missing" if error.error_code == "RESOURCE_DOES_NOT_EXIST" else None
    if isinstance(error, requests.exceptions.HTTPError):
        return (
            "refused"
            if error.response is not None and error.response.status_code in REFUSED_STATUS
            else None
        )
    if isinstance(
        error,
        (
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            ConnectionError,
            TimeoutError,
        ),
    ):
        return "unreachable"
    if sqlstate(error).startswith(REFUSED_SQLSTATE_CLASS):
        return "refused"
    if isinstance(error, database_connection_errors()):
        return "unreachable"
    if isinstance(error, OSError) and error.filename is not None:
        return "file"
    return None


def raised_by_optuna_storage(error: BaseException) -> bool:
    """Whether Optuna's storage raised it: a database error there is the studies database's,
    not the tracking store's (both may be SQLAlchemy on PostgreSQL or SQLite)."""
    return any(
        frame.f_globals.get("__name__", "").startswith("optuna.storages")
        for frame, _ in traceback.walk_tb(error.__traceback__)
    )


def database_connection_errors() -> tuple[type[BaseException], ...]:
    """The errors a database raises when it cannot be opened or connected to."""
    errors: tuple[type[BaseException], ...] = (
        sqlalchemy.exc.OperationalError,
        sqlite3.OperationalError,
    )
    try:
        import psycopg  # The server extra's.
    except ImportError:
        return errors
    return (*errors, psycopg.OperationalError)


def sqlstate(error: BaseException) -> str:
    """A database error's SQLSTATE (psycopg keeps it on the error, sqlalchemy on .orig)."""
    for candidate in (error, getattr(error, "orig", None)):
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str):
            return state
    return ""
