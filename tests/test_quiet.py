"""What a run prints: by default what the user acts on; with --verbose, everything."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from poster_ml.cli import main

NOISE = (
    "absl::InitializeLog",
    "cudart_stub",
    "INFO mlflow",
    "UserWarning",
    "Downloading artifacts",
    "Add type hints",
)


@pytest.mark.slow
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
    # One line for the training (its epochs, the epoch it kept and that epoch's validation
    # AUC), not one per epoch;
    # the decision, not the leaderboard's table.
    assert (
        "training basic_cnn" in printed
        and re.search(
            r"basic_cnn: epochs 1-2 of 2 in \d+ s; kept epoch [12] of 2: validation AUC", printed
        )
        and "basic_cnn epoch 1/2" not in printed
        and "train run: http" in printed
        and "best on validation: basic_cnn" in printed
        and "| basic_cnn |" not in printed
    )
    verbose = subprocess.run(
        [*command, "--restart", "true"],
        env=environment | {"POSTER_ML_VERBOSE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    verbose_printed = verbose.stdout + verbose.stderr
    assert verbose.returncode == 0 and "INFO mlflow" in verbose_printed
    assert "basic_cnn epoch 2/2: " in verbose_printed and "| basic_cnn |" in verbose_printed
    quiet_run = subprocess.run(
        [*command, "--restart", "true", "--quiet"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert quiet_run.returncode == 0 and "training basic_cnn" not in quiet_run.stdout


def test_code_that_embeds_a_step_routes_or_silences_the_poster_ml_logger(tmp_path):
    """A library's manners: without the command line, info goes only where the caller's
    logging sends it."""
    import logging

    from poster_ml.config import PreprocessConfig
    from poster_ml.steps.preprocess import preprocess_step

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("poster_ml")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        preprocess_step(PreprocessConfig(count=30, size=16, out=str(tmp_path / "p")))
    finally:
        logger.removeHandler(handler)
    assert any(record.getMessage().startswith("prepared 30 of 30 posters") for record in records)
    assert {record.name for record in records} >= {
        "poster_ml.steps.preprocess",
        "poster_ml.tracking.runs",
    }
