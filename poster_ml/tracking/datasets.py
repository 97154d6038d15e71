"""Datasets in MLflow: what preprocess logs of the posters it prepared, the prepared posters
as a run's dataset input (its source, as MLflow reads it back, is prepared_source.py), a
preprocess run's logged copy, and finding that copy again by run URI or as the latest,
downloaded once into a cache keyed by digest."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import urllib.parse
import warnings
from collections.abc import Callable
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from poster_ml import plots
from poster_ml.config import environment
from poster_ml.data.prepared import (
    PreparedData,
    dataset_files,
    file_checksums,
    load_prepared,
    sample_posters,
    verify_copy,
)
from poster_ml.errors import DatasetError, TrackingStoreError
from poster_ml.locks import exclusive
from poster_ml.tracking import schema
from poster_ml.tracking.prepared_source import PreparedRunSource
from poster_ml.tracking.schema import PREPARED_URI_TAG
from poster_ml.tracking.store import configure_tracking, log_figure

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


def data_trained_on(run: mlflow.entities.Run, spec: str, what: str) -> PreparedData:
    """The prepared data `spec` names (a folder, runs:/<id>/prepared or 'latest'), which must
    be the dataset `run` trained on: the one check of evaluate and register, a line of
    error (naming `what` trained) when it is another."""
    data = open_data(spec)
    trained_on = schema.digest_of(run)
    if trained_on != data.digest:
        raise DatasetError(
            f"{what} trained on dataset {trained_on[:12] or '(unknown)'}, but {data.path} holds "
            f"{data.digest[:12]}; pass --data with the prepared data it trained on"
        )
    return data


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
    digest = schema.digest_of(run)
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


def split_dataset(data: PreparedData, split: str | None = None):
    """The prepared dataset (or one split of it) as an MLflow dataset, named by its digest."""
    manifest, digest = data.manifest if split is None else data.split(split), data.info["digest"]
    with warnings.catch_warnings():
        # MLflow warns that a local path could be one of two equivalent source kinds, and
        # that integer columns cannot hold missing values; neither applies to a manifest.
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(  # type: ignore[attr-defined]  # Lazily exported by MLflow.
            manifest,
            # Data fetched from a preprocess run names that run, where any machine finds it.
            source=PreparedRunSource(data.uri) if data.uri else str(data.path.resolve()),
            targets="label",
            name=f"posters-{digest[:12]}" + (f"-{split}" if split else ""),
            # The store keeps at most 36 characters of a digest; the full one travels as a tag.
            digest=(digest[:28] + (split or "")[:4]) if split else digest[:32],
        )
        _ = dataset.schema  # Inferred (and cached) here, where its warning is understood.
        return dataset


def dataset_input(data: PreparedData, context: str) -> None:
    """Logs the prepared dataset as the run's MLflow dataset input, carrying our full digest."""
    digest, dataset = data.info["digest"], split_dataset(data)

    def log() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # As in split_dataset.
            mlflow.log_input(dataset, context=context, tags={"sha256": digest})

    with_dataset_race_retried(log)
    mlflow.set_tags(
        {schema.DIGEST_TAG: digest, "data_path": str(data.path.resolve())}
        | ({"data_uri": data.uri} if data.uri else {})
    )


def with_dataset_race_retried(log: Callable[[], object], attempts: int = 3) -> None:
    """Calls `log`, a call that records a dataset (an input, or metrics linked to one).

    MLflow's SQL store looks for the dataset, then inserts it: two workers that log the same
    new dataset at once both insert, and the slower one breaks the unique key. Its retry
    finds the row the faster one wrote."""
    for attempt in range(attempts):
        try:
            log()
            return
        except MlflowException as error:
            if "unique constraint" not in str(error).lower() or attempt == attempts - 1:
                raise


def log_preprocess(dataset: PreparedData, log_data: bool) -> PreparedData:
    """Logs what preprocess made, named by its run (runs:/<id>/prepared) wherever it is
    used; with `log_data` the whole dataset too, for other machines."""
    info = dataset.info
    # The preprocess run is the dataset's source for every later run, logged or not: MLflow
    # keeps one dataset per name and digest, and its first source is the one it shows.
    uri = log_prepared(dataset) if log_data else prepared_uri(mlflow.active_run().info.run_id)  # type: ignore[union-attr]  # Inside the preprocess run.
    dataset = dataclasses.replace(dataset, uri=uri)
    dataset_input(dataset, context="preprocess")
    mlflow.log_metrics(
        {"inputs": info["inputs"], "accepted": info["accepted"], "rejected": info["rejected"]}
    )
    for name in ("manifest.csv", "rejects.csv", "dataset.json"):
        mlflow.log_artifact(str(dataset.path / name))
    log_figure(plots.class_balance_chart(info["counts"]), "class_balance.png")
    log_figure(plots.sample_grid(sample_posters(dataset)), "sample_posters.png")
    return dataset
