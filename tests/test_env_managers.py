"""`mlflow run` without conda: MLflow's uv environment manager builds conda.yaml's
environment, isolated from ours, and runs an entry point in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]


def clean_copy(destination: Path) -> Path:
    """The project's tracked files only, as a fresh clone would have them."""
    listed = (
        subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    return destination


@pytest.mark.slow
def test_an_entry_point_runs_in_a_uv_environment_built_from_conda_yaml(tmp_path):
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(uv).exists():
        pytest.fail("uv is not installed; it is in the project's test extra")
    project = clean_copy(tmp_path / "project")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    environment = os.environ | {
        "MLFLOW_TRACKING_URI": store,
        "PATH": os.pathsep.join([str(Path(uv).parent), os.environ.get("PATH", "")]),
        # The uv environment lives outside the project copy, as MLflow places it.
        "MLFLOW_ENV_ROOT": str(tmp_path / "envs"),
    }
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(project),
        "-e",
        "preprocess",
        "--env-manager",
        "uv",
        "--experiment-name",
        "poster-ml",
        "-P",
        "source=synthetic",
        "-P",
        "count=40",
        "-P",
        "size=32",
        "-P",
        f"out={tmp_path / 'prepared'}",
    ]
    finished = subprocess.run(
        command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=1200
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert (tmp_path / "prepared" / "dataset.json").is_file()
    client = MlflowClient(store)
    run = client.search_runs([client.get_experiment_by_name("poster-ml").experiment_id])[0]
    assert run.info.status == "FINISHED" and run.data.tags["poster_ml.step"] == "preprocess"
    # Each parameter once: MLflow logs the entry point's, the step does not repeat them.
    assert run.data.params["count"] == "40" and not [
        name for name in run.data.params if name.startswith("preprocess.")
    ]
    # MLflow tags the run with the environment manager that built its environment.
    assert run.data.tags["mlflow.project.env"] == "uv"
