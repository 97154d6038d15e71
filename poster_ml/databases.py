"""PostgreSQL databases opened by the project itself (the team server's, and Optuna's study
storage): a missing role or database, or a server that is down, is one line within seconds
that names the database, and first openings by several processes at once take turns."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from poster_ml.errors import ConfigError, first_line

if TYPE_CHECKING:
    import psycopg

# The advisory lock under which a process creates the tables of a fresh database.
SCHEMA_LOCK_KEY = 0x706F737465726D6C  # "posterml"


def store_folder(tracking_uri: str) -> Path:
    """The folder of a sqlite:/// tracking store, else the working directory: where the
    project keeps its own files beside the runs (the default Optuna study, checkpoints)."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///")).parent
    return Path.cwd()


def redacted(uri: str) -> str:
    """The URI with any password replaced by ***."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def is_postgresql(uri: str) -> bool:
    return uri.partition("://")[0].startswith("postgresql")


def connection_errors() -> tuple[type[Exception], ...]:
    """What a connection cut by the server (a restart, a failover) raises: SQLAlchemy's
    OperationalError, and psycopg's own where it is installed."""
    import sqlalchemy.exc

    try:
        import psycopg
    except ImportError:
        return (sqlalchemy.exc.OperationalError,)
    return (sqlalchemy.exc.OperationalError, psycopg.OperationalError)


CONNECTION_CUT = connection_errors()


def is_connection_cut(error: BaseException) -> bool:
    """Whether an error (or the database error behind it: Optuna wraps a failed commit in
    StorageInternalError) is a connection the server closed, not bad data."""
    import sqlalchemy.exc

    cause = error.__cause__ or error
    if isinstance(cause, sqlalchemy.exc.DBAPIError):
        return cause.connection_invalidated or isinstance(
            cause, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError
        )
    return isinstance(cause, (*CONNECTION_CUT, sqlalchemy.exc.PendingRollbackError))


@contextlib.contextmanager
def connected(uri: str, purpose: str, timeout_seconds: int = 5) -> Iterator[psycopg.Connection]:
    """A psycopg connection to a `postgresql[+driver]://` URI, or a ConfigError naming the
    `purpose` database and PostgreSQL's reason."""
    try:
        import psycopg  # The server extra's.
    except ImportError:
        raise ConfigError(
            'a PostgreSQL database needs the server extra: pip install "poster-ml[server]"'
        ) from None
    rest = uri.partition("://")[2]
    try:
        connection = psycopg.connect(
            f"postgresql://{rest}", connect_timeout=timeout_seconds, autocommit=True
        )
    except psycopg.OperationalError as error:
        raise ConfigError(
            f"cannot open the {purpose} database {redacted(uri)}: {first_line(error)}"
        ) from None
    with connection:
        yield connection


def check(uri: str, purpose: str, timeout_seconds: int = 5) -> None:
    """Opens the database once, so that a problem is one line before any other work."""
    with connected(uri, purpose, timeout_seconds):
        pass


@contextlib.contextmanager
def schema_turn(uri: str, purpose: str) -> Iterator[None]:
    """Holds a PostgreSQL advisory lock while the caller opens the database through a library
    that creates its tables on first use (Optuna's RDBStorage): two workers starting at once
    on a fresh database would otherwise both create them, and one fails on a duplicate
    `alembic_version`. The lock ends with the connection."""
    with connected(uri, purpose) as connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK_KEY,))
        yield
