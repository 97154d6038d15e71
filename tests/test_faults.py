"""Faults of what the project depends on: a disk that fills (preprocess's shards, the
training's epoch backup, predict's CSV) and a database whose connections are cut during
tuning. Each ends in one line and a non-zero exit, or in success; the same command
afterwards completes, and nothing half-written is trusted.

The disk is a real small filesystem (tmpfs) where the machine lets the test mount one;
elsewhere the test says so and injects "no space left on device" at the write call.
"""

from __future__ import annotations

import errno
import os
import subprocess
import threading
import time
from pathlib import Path

import optuna
import pytest
from helpers import POSTGRES, variant_model_uri
from mlflow.tracking import MlflowClient

from poster_ml import disk
from poster_ml.cli import main
from poster_ml.models import tuning


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs, or None where mounting is not allowed (not root, not Linux) or
    POSTER_ML_TEST_INJECT_DISK_FULL=1 asks for the injected error instead."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.environ.get("POSTER_ML_TEST_INJECT_DISK_FULL"):
        yield None
        return
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True
        ).returncode
    except OSError:  # No mount command at all.
        mounted = 1
    if mounted != 0:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path, leave: int = 0) -> Path:
    """Writes a filler file until the filesystem has at most `leave` bytes free."""
    filler = folder / "filler"
    with open(filler, "wb") as file:
        while (free := disk.free_bytes(folder)) > leave:
            try:
                file.write(b"\0" * min(2**20, free - leave))
                file.flush()
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
    return filler


def no_space(*arguments, **options):
    raise OSError(errno.ENOSPC, "No space left on device")


def one_error_line(capsys) -> str:
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1, errors
    return errors[0]


def test_preprocess_on_a_full_disk_says_the_space_needed_and_writes_nothing_it_trusts(
    small_disk, tmp_path, capsys, monkeypatch
):
    # The posters are the user's own files, elsewhere: the small disk gets the dataset only.
    assert main(["preprocess", "--count", "300", "--size", "16", "--out", str(tmp_path / "s")]) == 0
    posters = tmp_path / "s" / "synthetic"
    out = (small_disk or tmp_path) / "prepared"
    arguments = ["preprocess", "--source", str(posters / "labels.csv"), "--images"]
    arguments += [str(posters / "images"), "--size", "64", "--out", str(out)]
    if small_disk is None:  # Injected: the disk reports 1 MB free.
        monkeypatch.setattr(disk, "free_bytes", lambda path: 2**20)
    else:
        filler = fill(small_disk, leave=3 * 2**20)
    assert main(arguments) == 1
    line = one_error_line(capsys)
    assert "not enough space for 300 posters in" in line and str(out) in line
    needed = disk.megabytes(2 * 300 * 64 * 64 * 3 + 2**20)  # Staging and shards, and a margin.
    assert f"needs {needed}" in line and "run the same command again" in line
    assert not (out / "dataset.json").exists() and not (out / "staging.npy").exists()
    if small_disk is None:
        monkeypatch.undo()
    else:
        filler.unlink()
    assert main(arguments) == 0
    assert (out / "dataset.json").is_file()


def test_predict_meeting_a_full_disk_leaves_no_half_written_csv(
    small_disk, tmp_path, capsys, monkeypatch, trained_store
):
    store, data = trained_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    model_uri = variant_model_uri(store)
    posters = sorted((data / "synthetic" / "images").iterdir())[:40]
    out = (small_disk or tmp_path) / "predictions.csv"
    arguments = ["predict", "--model", model_uri, "--out", str(out), *map(str, posters)]
    if small_disk is None:  # Injected at the write call: the CSV writer's rows.
        import csv

        monkeypatch.setattr(csv.DictWriter, "writerows", no_space)
    else:
        filler = fill(small_disk, leave=0)
    assert main(arguments) == 1
    line = one_error_line(capsys)
    assert "no space left on device writing" in line and "run the same command again" in line
    assert not out.exists() and not list(out.parent.glob("*.partial*"))
    if small_disk is None:
        monkeypatch.undo()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    else:
        filler.unlink()
    assert main(arguments) == 0
    assert len(out.read_text().splitlines()) == len(posters) + 1


def test_a_training_whose_backup_meets_a_full_disk_resumes_with_every_epoch_once(
    tmp_path, capsys, monkeypatch
):
    """The disk fills while the third epoch's backup is written: half a weights file, then
    "no space left on device". The step stops with one line; once space is freed, the same
    command continues from the last whole backup (Keras's double checkpoint), and the run
    holds every epoch once.

    Injected at the write call on every machine: a backup rewrites files of the same size,
    which fit in the space their own truncation frees, so a filled tmpfs never fails it.
    """
    import keras

    assert main(["preprocess", "--count", "120", "--size", "32", "--out", "p"]) == 0
    save_weights, saves = keras.Model.save_weights, []

    def filling_disk(model, filepath, *arguments, **options):
        saves.append(filepath)
        if len(saves) < 3:
            return save_weights(model, filepath, *arguments, **options)
        Path(filepath).write_bytes(b"\x89HDF\r\n" + b"\0" * 100)  # Cut short.
        raise OSError(errno.ENOSPC, "No space left on device", str(filepath))

    monkeypatch.setattr(keras.Model, "save_weights", filling_disk)
    train = ["train", "--data", "p", "--variants", "basic_cnn", "--trials", "0"]
    train += ["--overrides", "max_epochs=4 batch_size=16 patience=10"]
    assert main(train) == 1
    line = one_error_line(capsys)
    assert "no space left on device writing" in line and "latest.weights.h5" in line
    assert "run the same command again" in line
    monkeypatch.setattr(keras.Model, "save_weights", save_weights)
    assert main(train) == 0
    client = MlflowClient()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    variant = [run for run in runs if run.info.run_name == "basic_cnn"]
    assert [run.info.status for run in variant] == ["FINISHED"]
    history = client.get_metric_history(variant[0].info.run_id, "loss")
    assert sorted(metric.step for metric in history) == [0, 1, 2, 3]
    assert not [run for run in runs if run.info.status == "RUNNING"]


@pytest.mark.slow
def test_tuning_survives_its_database_connections_being_cut_and_finishes_exactly_n_trials(
    postgres_database, tmp_path, capsys
):
    """What a PostgreSQL restart does to a worker: every connection of the studies
    database terminated (pg_terminate_backend), again and again during the trials."""
    import psycopg

    database = postgres_database("faults")
    storage = f"postgresql+psycopg://{POSTGRES.removeprefix('postgresql://')}/{database}"
    assert main(["preprocess", "--count", "120", "--size", "32", "--out", "p"]) == 0
    stop = threading.Event()
    cuts = []

    def cut_connections() -> None:
        with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
            while not stop.wait(1.5):
                killed = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (database,),
                ).fetchone()
                cuts.append(killed[0] if killed else 0)

    cutter = threading.Thread(target=cut_connections, daemon=True)
    cutter.start()
    try:
        train = ["train", "--data", "p", "--variants", "basic_cnn", "--trials", "4"]
        train += ["--storage", storage, "--overrides", "max_epochs=3 batch_size=16"]
        code = main(train)
    finally:
        stop.set()
        cutter.join()
    assert code == 0, capsys.readouterr().err
    assert sum(cuts) > 0  # Connections were really cut while it ran.
    (study,) = optuna.get_all_study_summaries(tuning.make_storage(storage, 60))
    loaded = optuna.load_study(study_name=study.study_name, storage=storage)
    assert len(loaded.get_trials(states=tuning.FINISHED)) == 4
    time.sleep(0)  # The study is whole: no trial counted twice, none left running.
    assert not loaded.get_trials(states=(optuna.trial.TrialState.RUNNING,))


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TrackingServer:
    """MLflow's own server on an SQLite store in `folder`, which a test stops and starts."""

    def __init__(self, folder: Path, port: int):
        self.folder, self.port, self.uri = folder, port, f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Starts the server; returns once it answers."""
        import sys

        import requests

        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "mlflow", "server"),
                *("--backend-store-uri", f"sqlite:///{self.folder / 'server.db'}"),
                *("--artifacts-destination", str(self.folder / "art")),
                *("--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.uri}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.3)
        self.stop()
        pytest.fail("the tracking server did not come up")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait()
            self.process = None


@pytest.fixture
def tracking_server(tmp_path):
    """A running MLflow server, stopped at the end of the test whatever happened (a server
    left behind would slow every later test)."""
    server = TrackingServer(tmp_path, free_port())
    server.start()
    yield server
    server.stop()


def history_lines(folder: Path) -> int:
    return sum(len(path.read_text().splitlines()) for path in folder.rglob("history.csv"))


@pytest.mark.slow
def test_training_goes_on_while_the_tracking_server_is_away_and_stops_in_one_line_past_the_limit(
    tmp_path, tracking_server
):
    """The server stops for 8 s during a training: epochs go on meanwhile (their metrics
    queued), and the run ends FINISHED with every epoch once. Stopped for good past the
    limit (MLflow's HTTP retries, cut short here), the step stops in one line; the same
    command after the server is back continues, repeating and losing no epoch."""
    import sys

    work, uri = tmp_path / "work", tracking_server.uri
    work.mkdir()
    environment = os.environ | {"MLFLOW_TRACKING_URI": uri}
    assert main(["preprocess", "--count", "200", "--size", "32", "--out", str(work / "p")]) == 0
    train = [sys.executable, "-m", "poster_ml.cli", "train", "--data", str(work / "p")]
    train += ["--variants", "basic_cnn", "--trials", "0", "--overrides"]

    def run(epochs: int, patience_environment: dict, outage=None):
        process = subprocess.Popen(
            [*train, f"max_epochs={epochs} batch_size=8 patience=100 lr_patience=100"],
            cwd=work,
            env=environment | patience_environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if outage is not None:
            outage(process)
        return process.communicate(timeout=600)[0], process.returncode

    trained_meanwhile = []

    def short_outage(process) -> None:
        while history_lines(work) < 3 and process.poll() is None:  # Two epochs in.
            time.sleep(0.2)
        # Counted from the moment the server starts to go: its shutdown takes seconds, in
        # which a fast machine trains epochs that count as trained while it was away.
        before = history_lines(work)
        tracking_server.stop()
        time.sleep(8)
        trained_meanwhile.append(history_lines(work) - before)
        tracking_server.start()

    # MLflow's retries wait 2, 4, 8, 16 ... s by default; waits from 1 s keep the
    # test short and still outlasts the outage.
    output, code = run(8, {"MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}, short_outage)
    assert code == 0, output
    assert trained_meanwhile[0] > 0  # It did not stand still while the server was away.
    client = MlflowClient(uri)
    (variant,) = client.search_runs(["1"], "attributes.run_name = 'basic_cnn'")
    assert variant.info.status == "FINISHED"
    steps = sorted(m.step for m in client.get_metric_history(variant.info.run_id, "loss"))
    assert steps == list(range(8))

    def long_outage(process) -> None:
        while history_lines(work) < 3 and process.poll() is None:
            time.sleep(0.2)
        tracking_server.stop()

    limit = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
    output, code = run(6, limit, long_outage)
    errors = [line for line in output.splitlines() if "error:" in line]
    assert code == 1 and len(errors) == 1 and "cannot reach the tracking store" in errors[0]
    assert "Traceback" not in output
    tracking_server.start()
    output, code = run(6, {})
    assert code == 0, output
    runs = client.search_runs(["1"], "attributes.run_name = 'basic_cnn'")
    latest = max(runs, key=lambda r: r.info.start_time)
    steps = sorted(m.step for m in client.get_metric_history(latest.info.run_id, "loss"))
    assert steps == list(range(6))
    assert not [r for r in client.search_runs(["1"]) if r.info.status == "RUNNING"]
