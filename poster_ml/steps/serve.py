"""Serving the champion: MLflow's scoring server behind a guard (serving_app.py), started
from this project's own environment, so nothing depends on an activated venv."""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path

from poster_ml.processes import run_in_foreground
from poster_ml.tracking import loading, runs
from poster_ml.using_config import ServeConfig


def serve_step(config: ServeConfig) -> int:
    """Downloads the model and runs uvicorn on the guarded scoring app until stopped."""
    runs.configure_tracking()
    with tempfile.TemporaryDirectory() as folder:
        local = loading.download_model(config.model, folder)
        environment = (
            os.environ
            | server_tuning(config.workers)
            | {
                "POSTER_ML_MODEL_PATH": local,
                "POSTER_ML_MAX_REQUEST_BYTES": str(config.max_request_mb * 2**20),
                "PYTHONPATH": os.pathsep.join(
                    [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
                ),
            }
        )
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--host",
            config.host,
            "--port",
            str(config.port),
            "--workers",
            str(config.workers),
            "poster_ml.tracking.serving_app:app",
        ]
        print(f"serving {config.model} at http://{config.host}:{config.port}/invocations")
        print(f"running: {shlex.join(command)}", flush=True)
        return run_in_foreground(command, environment)


def server_tuning(workers: int) -> dict[str, str]:
    """Environment settings that keep a busy server within the machine.

    Each worker's TensorFlow gets its share of the cores: two workers that each ran as
    many threads as there are cores would fight over them. And glibc is told to hand
    buffers of 128 KiB or more straight back to the system when freed (its default, which
    it otherwise raises as it goes): without it, the memory of the largest requests a
    server ever received (a 32-poster request is 30 MB of JSON, and a poster's base64 text
    under a megabyte, several copies of each while parsed) stays with the process for good. A setting
    the user made in the environment wins.
    """
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    tuning = {"MALLOC_MMAP_THRESHOLD_": str(2**17), "MALLOC_TRIM_THRESHOLD_": str(2**17)}
    if workers > 1:
        tuning |= {"TF_NUM_INTRAOP_THREADS": threads, "OMP_NUM_THREADS": threads}
    return {name: value for name, value in tuning.items() if name not in os.environ}
