"""Serving the champion: MLflow's scoring server behind a guard (serving_app.py), started
from this project's own environment, so nothing depends on an activated venv."""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path

from poster_ml.config import ServeConfig
from poster_ml.processes import run_in_foreground
from poster_ml.tracking import loading, store


def serve_step(config: ServeConfig) -> int:
    """Downloads the model and runs uvicorn on the guarded scoring app until stopped."""
    store.configure_tracking()
    with tempfile.TemporaryDirectory() as folder:
        local = loading.download_model(config.model, folder)
        environment = os.environ | {
            "POSTER_ML_MODEL_PATH": local,
            "POSTER_ML_MAX_REQUEST_BYTES": str(config.max_request_mb * 2**20),
            "PYTHONPATH": os.pathsep.join(
                [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
            ),
        }
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
