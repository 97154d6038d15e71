"""What a run prints: by default what the user acts on; with --verbose, everything."""

from __future__ import annotations

import os
import subprocess
import sys

from poster_ml.cli import main

NOISE = (
    "absl::InitializeLog",
    "cudart_stub",
    "INFO mlflow",
    "UserWarning",
    "Downloading artifacts",
    "Add type hints",
)


def test_a_training_prints_what_the_user_acts_on_and_verbose_brings_the_rest_back(tmp_path):
    assert main(["preprocess", "--count", "60", "--size", "32", "--out", "p"]) == 0
    command = [
        sys.executable,
        "-m",
        "poster_ml.cli",
        "train",
        "--data",
        "p",
        "--profile",
        "quick",
        "--variants",
        "basic_cnn",
        "--trials",
        "0",
        "--overrides",
        "max_epochs=2",
    ]
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("TF_CPP_MIN_LOG_LEVEL", "POSTER_ML_VERBOSE", "MLFLOW_LOGGING_LEVEL")
    }
    quiet = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    printed = quiet.stdout + quiet.stderr
    assert not [line for line in printed.splitlines() if any(noise in line for noise in NOISE)], (
        printed
    )
    assert (
        "training basic_cnn" in printed
        and "Epoch 2/2" in printed
        and "train run: http" in printed
        and "| basic_cnn |" in printed
    )
    verbose = subprocess.run(
        [*command, "--restart", "true"],
        env=environment | {"POSTER_ML_VERBOSE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert verbose.returncode == 0 and "INFO mlflow" in verbose.stdout + verbose.stderr
