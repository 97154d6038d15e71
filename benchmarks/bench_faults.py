"""What the infrastructure's faults cost: the same training with and without each fault,
side by side in one run, and what was lost.

    python benchmarks/bench_faults.py [--outage 20] [--epochs 10]

1. The tracking server (MLflow's own, on SQLite) stopped for `--outage` seconds while a
   training runs, then started again: wall time against the same training with the
   server up, epochs trained while it was away, and epochs in the run afterwards.
2. Every connection of the Optuna study's PostgreSQL database terminated every 1.5 s
   (what a restart does to a worker) during a 4-trial tuning: wall time against the same
   tuning undisturbed, and the finished trials (goal: exactly 4).

Needs PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`) for the second part.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

POSTGRES = "postgresql://postgres@127.0.0.1:5432"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(folder: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port"]
    command += [str(port), "--workers", "1", "--backend-store-uri", f"sqlite:///{folder}/s.db"]
    command += ["--artifacts-destination", str(folder / "artifacts")]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                return server
        except requests.RequestException:
            time.sleep(0.3)


def history_lines(folder: Path) -> int:
    return sum(len(path.read_text().splitlines()) for path in folder.rglob("history.csv"))


def train_command(data: Path, epochs: int, extra: list[str]) -> list[str]:
    overrides = f"max_epochs={epochs} batch_size=8 patience=100 lr_patience=100"
    command = [sys.executable, "-m", "poster_ml.cli", "--quiet", "train", "--data", str(data)]
    return [*command, "--variants", "basic_cnn", "--overrides", overrides, *extra]


def server_outage(folder: Path, data: Path, epochs: int, outage: float | None) -> dict:
    """One training against a fresh server; with `outage`, the server stops two epochs in."""
    from mlflow.tracking import MlflowClient

    port, work = free_port(), folder / f"work-{outage}"
    work.mkdir()
    (folder / f"server-{outage}").mkdir()
    server = start_server(folder / f"server-{outage}", port)
    environment = os.environ | {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}
    started = time.perf_counter()
    process = subprocess.Popen(
        train_command(data, epochs, ["--trials", "0"]),
        cwd=work,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    meanwhile = 0
    if outage is not None:
        while history_lines(work) < 3 and process.poll() is None:
            time.sleep(0.1)
        server.terminate()
        server.wait()
        before = history_lines(work)
        time.sleep(outage)
        meanwhile = history_lines(work) - before
        server = start_server(folder / f"server-{outage}", port)
    process.wait()
    seconds = time.perf_counter() - started
    client = MlflowClient(f"http://127.0.0.1:{port}")
    (run,) = client.search_runs(["1"], "attributes.run_name = 'basic_cnn'")
    steps = [metric.step for metric in client.get_metric_history(run.info.run_id, "loss")]
    server.terminate()
    server.wait()
    return {
        "seconds": seconds,
        "exit": process.returncode,
        "status": run.info.status,
        "epochs_logged": len(steps),
        "distinct_epochs": len(set(steps)),
        "trained_while_away": meanwhile,
    }


def tuning_with_cuts(folder: Path, data: Path, cut: bool) -> dict:
    import optuna
    import psycopg

    database = f"poster_ml_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
    storage = f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
    stop, cuts = threading.Event(), []

    def cutter() -> None:
        with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
            while not stop.wait(1.5):
                row = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (database,),
                ).fetchone()
                cuts.append(row[0] if row else 0)

    thread = threading.Thread(target=cutter, daemon=True)
    work = folder / f"tune-{cut}"
    work.mkdir()
    environment = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{work}/mlflow.db"}
    started = time.perf_counter()
    if cut:
        thread.start()
    finished = subprocess.run(
        train_command(data, 3, ["--trials", "4", "--storage", storage]),
        cwd=work,
        env=environment,
        capture_output=True,
        text=True,
    )
    stop.set()
    seconds = time.perf_counter() - started
    summaries = optuna.get_all_study_summaries(storage)
    states = [
        trial.state.name
        for summary in summaries
        for trial in optuna.load_study(study_name=summary.study_name, storage=storage).trials
    ]
    with psycopg.connect(f"{POSTGRES}/test", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {database} WITH (FORCE)")
    return {
        "seconds": seconds,
        "exit": finished.returncode,
        "said": (finished.stdout + finished.stderr).strip().splitlines()[-1:],
        "connections_cut": sum(cuts),
        "finished_trials": states.count("COMPLETE") + states.count("PRUNED"),
        "states": ",".join(states),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=20.0)
    parser.add_argument("--epochs", type=int, default=10)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        data = folder / "prepared"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "poster_ml.cli",
                "--quiet",
                "preprocess",
                "--count",
                "200",
                "--size",
                "32",
                "--out",
                str(data),
            ],
            cwd=folder,
            check=True,
            env=os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{folder}/p.db"},
        )
        calm = server_outage(folder, data, arguments.epochs, None)
        away = server_outage(folder, data, arguments.epochs, arguments.outage)
        print(f"tracking server up:              {calm}")
        print(f"tracking server away {arguments.outage:.0f} s:       {away}")
        print(
            f"time with the outage / without: {away['seconds'] / calm['seconds']:.2f}x "
            f"({away['seconds'] - calm['seconds']:+.1f} s for a {arguments.outage:.0f} s outage)"
        )
        undisturbed = tuning_with_cuts(folder, data, cut=False)
        disturbed = tuning_with_cuts(folder, data, cut=True)
        print(f"studies database undisturbed:   {undisturbed}")
        print(f"connections cut every 1.5 s:    {disturbed}")
        print(
            f"time with the cuts / without:   {disturbed['seconds'] / undisturbed['seconds']:.2f}x"
        )


if __name__ == "__main__":
    main()
