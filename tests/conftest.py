"""Shared fixtures: an isolated tracking store, small prepared datasets, and the models
that several test modules read, each trained once per test run.

Under pytest-xdist (`make test` runs three workers, `make test-fast` two) every worker is a
process of its own. A fixture that trains is built once for the whole run, by whichever
worker asks first, in a folder beside the workers' own (`shared_across_workers`); the
others wait for it and read it. TensorFlow sizes its thread pools to every core of the
machine, so each worker is given its share of the cores before TensorFlow starts, and the
processes it starts inherit that share.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("PYTEST_XDIST_WORKER"):
    _share = str(
        max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    )
    for _name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS", "POSTER_ML_WARP_THREADS"):
        os.environ.setdefault(_name, _share)

import mlflow
import pytest
from helpers import POSTGRES

from poster_ml.cli import main
from poster_ml.config import PreprocessConfig
from poster_ml.data.prepare import prepare
from poster_ml.data.prepared import PreparedData, load_prepared
from poster_ml.locks import exclusive
from poster_ml.quiet import configure_logger


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An empty SQLite tracking store with MLflow's tables made, once per worker: making
    them takes MLflow seconds, and copying the file takes a millisecond."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def fresh_store(empty_store: Path, folder: Path) -> str:
    """A copy of the empty store in `folder`, its Default experiment's artifacts in
    `folder`/mlruns/0 as if MLflow had made it there; returns its tracking URI."""
    shutil.copyfile(empty_store, folder / "mlflow.db")
    with contextlib.closing(sqlite3.connect(folder / "mlflow.db")) as database, database:
        database.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
            (str(folder / "mlruns" / "0"),),
        )
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def isolated_tracking(tmp_path_factory, monkeypatch, empty_store):
    """Every test gets its own SQLite tracking store, and its artifacts land beside it
    (in ./mlruns of a temporary working directory), never in the checkout."""
    folder = tmp_path_factory.mktemp("mlflow")
    fresh_store(empty_store, folder)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
    # MLflow's fluent API keeps the URI of the last set_tracking_uri in the process.
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    # It keeps the experiment of the last set_experiment too, whose id means nothing in a
    # new store; MLflow has no public call to forget it.
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    # `--verbose` sets it for the steps a command starts; it must not outlive one test.
    monkeypatch.delenv("POSTER_ML_VERBOSE", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    # Prepared data fetched from a run lands in a cache of the test's own, not ~/.cache.
    monkeypatch.setenv("POSTER_ML_DATA_CACHE", str(folder / "data-cache"))
    # What the command line does: the `poster_ml` logger prints at INFO, on stdout. A test
    # that calls a step directly sees what `poster-ml <step>` would print.
    monkeypatch.delenv("POSTER_ML_QUIET", raising=False)
    configure_logger(logging.INFO)


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """400 synthetic posters prepared at 64 pixels, shared by the read-only tests."""
    out = tmp_path_factory.mktemp("prepared")
    return prepare(PreprocessConfig(count=400, size=64, out=str(out), seed=7))


def shared_across_workers(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder that `build(folder)` fills once per test run, whichever worker asks first.

    Without pytest-xdist it is this session's own; with it, it sits in the run's base folder
    beside the workers' own. The lock makes the other workers wait while it is built; a
    build that failed leaves no mark, so the next worker that asks builds it again (and
    fails in its own tests the same way)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder = root / f"shared-{name}"
    with exclusive(root / f"shared-{name}.lock", wait=True):
        if not (folder / "BUILT").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / "BUILT").touch()
    return folder


def train_two_variants(folder: Path) -> None:
    """One quick train call on two variants in `folder`, as a user runs it: the default data
    location is missing there, so train prepares the synthetic default first."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        # A short run still gets samples.
        patch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "1")
        exit_code = main(
            [
                *("train", "--profile", "quick", "--variants", "basic_cnn,vgg16_features"),
                *("--trials", "0", "--overrides", "max_epochs=2 batch_size=16"),
            ]
        )
    if exit_code != 0:
        raise RuntimeError(f"the trained store's train call exited with {exit_code}")


@pytest.fixture(scope="session")
def trained_store(tmp_path_factory):
    """One quick train call on two variants, its tracking store and its data folder.

    The call runs once per test run; each worker gets a copy of its SQLite store (so that
    two workers never write one database), while the runs' artifacts and the prepared data
    stay in the one folder they were written to, read by all and written under new run ids
    only."""
    built = shared_across_workers(tmp_path_factory, "trained-store", train_two_variants)
    own = tmp_path_factory.mktemp("train")
    shutil.copyfile(built / "mlflow.db", own / "mlflow.db")
    return f"sqlite:///{own / 'mlflow.db'}", built / "data" / "prepared"


def train_basic_cnn(folder: Path) -> None:
    from poster_ml.config import AugmentConfig, TrainConfig
    from poster_ml.models.fit import train_variant
    from poster_ml.models.variants import VARIANTS

    data = prepare(PreprocessConfig(count=600, size=64, out=str(folder / "data"), seed=3))
    trained = train_variant(
        VARIANTS["basic_cnn"], data, TrainConfig(max_epochs=8, weights="none"), AugmentConfig()
    )
    trained.model.save(folder / "basic_cnn.keras")


@pytest.fixture(scope="session")
def trained_cnn(tmp_path_factory) -> tuple:
    """basic_cnn trained for 8 epochs on 600 synthetic posters at 64 pixels, well beyond
    chance, and its prepared data: the model the CAM and register tests read. Trained once
    per test run; each worker loads its own copy of the saved model."""
    import keras

    import poster_ml.models.bases  # noqa: F401  Registers the custom preprocessing layer.

    folder = shared_across_workers(tmp_path_factory, "trained-cnn", train_basic_cnn)
    data: PreparedData = load_prepared(folder / "data")
    return keras.saving.load_model(folder / "basic_cnn.keras"), data


@pytest.fixture
def postgres_database():
    """Makes databases of their own on the local PostgreSQL server (database `test` is the
    way in) and drops them afterwards. Without a server the test skips on a laptop and
    fails under CI, where .ci/run has started one."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(f"{POSTGRES}/test", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        if os.environ.get("CI"):
            pytest.fail(f"no PostgreSQL server on 127.0.0.1:5432 under CI: {error}")
        pytest.skip(f"no PostgreSQL server on 127.0.0.1:5432: {error}")
    made = []

    def make(purpose: str) -> str:
        name = f"poster_ml_{purpose}_{uuid.uuid4().hex[:8]}"
        admin.execute(f"CREATE DATABASE {name}")
        made.append(name)
        return name

    try:
        yield make
    finally:
        for name in made:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


def pytest_collection_modifyitems(items):
    """The minutes-long tests (marked slow) first: the workers start on them and the short
    ones fill in behind, so that no worker ends the run alone on one long test."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
