"""What went wrong with the tracking store, in one line a user can act on: a run that is
not there, a store that cannot be reached, and a store that refuses the credentials are
three different messages, each naming the store's URI without its password."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

from mlflow.exceptions import MlflowException

from poster_ml.errors import TrackingStoreError

UNREACHABLE = re.compile(r"connection refused|max retries exceeded|could not connect|name or service not known|timed out|"
                         r"failed to establish|unable to open database|no route to host|temporary failure in name resolution", re.IGNORECASE)
REFUSED = re.compile(r"password authentication failed|401|403|unauthori[sz]ed|permission denied|forbidden|credentials", re.IGNORECASE)


def redacted(uri: str) -> str:
    """The URI with any password replaced by ***."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def tracking_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri() or os.environ.get("MLFLOW_TRACKING_URI", "")


def store_error(error: Exception) -> TrackingStoreError | None:
    """The one-line error for a tracking-store failure, or None if `error` is not one."""
    text = f"{type(error).__name__}: {error}"
    error_code = getattr(error, "error_code", "")
    uri = redacted(tracking_uri())
    if error_code in ("UNAUTHENTICATED", "PERMISSION_DENIED") or REFUSED.search(text):
        return TrackingStoreError(f"the tracking store {uri} refused the credentials (set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD); --verbose shows the cause")
    if UNREACHABLE.search(text):
        return TrackingStoreError(f"cannot reach the tracking store {uri}; is the server or database running? --verbose shows the cause")
    if isinstance(error, MlflowException) and error_code == "RESOURCE_DOES_NOT_EXIST":
        return TrackingStoreError(f"{first_line(error)} (in the tracking store {uri})")
    return None


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
