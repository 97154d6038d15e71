"""Prepared data that travels through the tracking server: a preprocess run logs its
dataset as artifacts, and any machine that can reach the server takes it from there with
`--data runs:/<preprocess run id>/prepared` (or `--data latest`).

A download lands in a local cache keyed by the dataset's digest. It is checked against
the run's checksums and digest before it is trusted, two processes on one machine download
it once (the second waits on a lock, then finds it there), and it becomes visible by one
rename, so an interrupted download leaves nothing that a later run would read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from poster_ml.config import environment
from poster_ml.data.prepared import (
    PreparedData,
    dataset_files,
    file_checksums,
    load_prepared,
    verify_copy,
)
from poster_ml.errors import DatasetError, TrackingStoreError
from poster_ml.locks import exclusive
from poster_ml.tracking import schema
from poster_ml.tracking.schema import PREPARED_URI_TAG
from poster_ml.tracking.store import configure_tracking

log = logging.getLogger(__name__)

ARTIFACT_PATH = "prepared"
CHECKSUMS = "checksums.json"
SERVER_SCHEMES = ("http", "https", "databricks")


def tracking_is_remote() -> bool:
    """Whether runs go to a tracking server, where other machines could read the data."""
    return urllib.parse.urlsplit(mlflow.get_tracking_uri()).scheme in SERVER_SCHEMES


def log_prepared(dataset: PreparedData) -> str:
    """Logs the dataset's files and their checksums to the active run; returns its URI."""
    files = dataset_files(dataset)
    with tempfile.TemporaryDirectory() as folder:
        checksums = Path(folder) / CHECKSUMS
        checksums.write_text(json.dumps(file_checksums(files), indent=2) + "\n")
        for path in [*files, checksums]:
            mlflow.log_artifact(str(path), ARTIFACT_PATH)
    uri = prepared_uri(mlflow.active_run().info.run_id)  # type: ignore[union-attr]  # Called inside the preprocess run.
    mlflow.set_tag(PREPARED_URI_TAG, uri)
    return uri


def prepared_uri(run_id: str) -> str:
    """A preprocess run's dataset as later steps name it: runs:/<run id>/prepared."""
    return f"runs:/{run_id}/{ARTIFACT_PATH}"


def open_data(spec: str) -> PreparedData:
    """The prepared dataset `spec` names: a local folder, runs:/<run id>/prepared, or
    'latest' (the newest finished preprocess run of the store that logged its data)."""
    if not is_remote_spec(spec):
        return load_prepared(spec)
    configure_tracking()
    if spec == "latest":
        spec = latest_prepared_uri()
    return run_dataset(spec)


def is_remote_spec(spec: str) -> bool:
    return spec == "latest" or spec.startswith("runs:/")


def used_data(run) -> str:
    """Where a train run's data can be found again: its run URI, else its local folder."""
    return run.data.tags.get("data_uri") or run.data.tags.get("data_path", "data/prepared")


def latest_prepared_uri() -> str:
    found = schema.latest_prepared_run()
    if found is None:
        raise DatasetError(
            "no finished preprocess run in the tracking store logged its prepared data; "
            "run `poster-ml preprocess --log-data true` against the tracking server first"
        )
    return found.data.tags[PREPARED_URI_TAG]


def cache_root() -> Path:
    return environment.cache_root() / "prepared"


def preprocess_run(uri: str) -> mlflow.entities.Run:
    run_id = uri.removeprefix("runs:/").split("/", 1)[0]
    try:
        return MlflowClient().get_run(run_id)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise TrackingStoreError(f"no such preprocess run: {run_id} (from --data {uri})") from error


def run_dataset(uri: str) -> PreparedData:
    """The dataset of a preprocess run, named by `uri`: the folder it wrote, when that is on
    this machine and still holds the same dataset (a step that `main` hands the run to),
    else the copy it logged, downloaded into the cache if not there yet. Loaded once."""
    run = preprocess_run(uri)
    digest = run.data.tags.get("dataset_digest", "")
    folder = Path(run.data.tags.get("data_path", ""))
    if digest and (folder / "dataset.json").is_file():
        with contextlib.suppress(DatasetError):
            local = load_prepared(folder, uri=uri)
            if local.digest == digest:
                return local
    if not digest or run.data.tags.get(PREPARED_URI_TAG) != uri:
        raise DatasetError(f"run {run.info.run_id} logged no prepared dataset at {uri}")
    return load_prepared(cached_copy(uri, run.info.run_id, digest), uri=uri)


def cached_copy(uri: str, run_id: str, digest: str) -> Path:
    """The local copy of a logged dataset, downloaded into the cache if not there yet."""
    root = cache_root()
    target = root / digest
    if (target / "dataset.json").is_file():
        return target
    with exclusive(root / f"{digest}.lock", wait=True):
        if (target / "dataset.json").is_file():  # Another process finished it while we waited.
            return target
        for stale in root.glob(f".{digest}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)  # A download that was interrupted.
        partial = root / f".{digest}.partial-{os.getpid()}"
        try:
            log.info(f"downloading prepared dataset {digest[:12]} from run {run_id} into {target}")
            copy = Path(
                mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(partial))
            )
            checksums = json.loads((copy / CHECKSUMS).read_text())
            verify_copy(copy, digest, checksums)
            os.replace(copy, target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return target
