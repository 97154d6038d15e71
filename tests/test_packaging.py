"""Packaging: pyproject.toml, conda.yaml and requirements.lock agree; every package the
code, tests and benchmarks import is declared; one version string."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import requests
import yaml
from helpers import POSTGRES
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import poster_ml

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def locked() -> dict[str, str]:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    return {
        canonicalize_name(name): version
        for name, version in (
            line.split("==") for line in lines if "==" in line and not line.startswith("#")
        )
    }


def declared() -> list[Requirement]:
    extras = PROJECT["optional-dependencies"]
    return [
        Requirement(text)
        for text in PROJECT["dependencies"]
        + [text for name in ("test", "server", "benchmark", "docs") for text in extras[name]]
    ]


def test_conda_yaml_asks_for_what_pyproject_asks_for():
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip = next(item["pip"] for item in conda["dependencies"] if isinstance(item, dict))
    assert sorted(pip) == sorted(PROJECT["dependencies"])


def test_the_lock_pins_a_version_every_requirement_accepts():
    pins = locked()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock; run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} does not satisfy {requirement}"
        )


def test_the_installed_versions_are_the_locked_ones():
    for name, version in locked().items():
        assert importlib.metadata.version(name) == version, name


def top_level_imports(folder: Path) -> set[str]:
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_imported_package_is_declared():
    local = {"poster_ml"} | {
        path.stem for folder in ("tests", "benchmarks") for path in (ROOT / folder).glob("*.py")
    }
    # dlib-bin installs dlib/ too, but its top_level.txt names only _dlib_pybind11.
    distributions = importlib.metadata.packages_distributions() | {"dlib": ["dlib-bin"]}
    names = {canonicalize_name(requirement.name) for requirement in declared()}
    imported = (
        set().union(
            *(top_level_imports(ROOT / folder) for folder in ("poster_ml", "tests", "benchmarks"))
        )
        - set(sys.stdlib_module_names)
        - local
    )
    # Packages that come with a declared one and are imported only as part of it.
    # jax and torch are imported only when KERAS_BACKEND names them: the user's choice of backend.
    missing = {"jax", "torch"} ^ {
        module
        for module in imported
        if not names & {canonicalize_name(name) for name in distributions.get(module, [module])}
    }
    assert not missing, missing


def test_one_version_string():
    assert importlib.metadata.version("poster-ml") == poster_ml.__version__


@pytest.mark.slow
def test_the_server_extra_installs_into_a_fresh_venv_and_the_team_server_starts(
    tmp_path, postgres_database
):
    """As a user installs it: `pip install "poster-ml[server]"` (uv, with the lock's versions
    as constraints, from the package index or its cache), then `poster-ml server`."""
    from test_env_managers import clean_copy

    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    # A copy of the tracked files, so that building the package writes nothing into the checkout.
    project = clean_copy(tmp_path / "project")
    venv = tmp_path / "venv"
    subprocess.run(
        [uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, timeout=300
    )
    installed = subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(venv / "bin" / "python"),
            f"{project}[server]",
            "-c",
            str(project / "requirements.lock"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runs_db, users_db = postgres_database("runs"), postgres_database("users")
    command = [
        str(venv / "bin" / "poster-ml"),
        "server",
        "--backend-store-uri",
        f"{POSTGRES}/{runs_db}",
        "--auth-database-uri",
        f"{POSTGRES}/{users_db}",
        "--artifacts-destination",
        str(tmp_path / "artifacts"),
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    server = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=os.environ | {"POSTER_ML_ADMIN_PASSWORD": "correct-horse-battery-staple"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline, status = time.monotonic() + 180, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                status = requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code
                break
            except requests.RequestException:
                time.sleep(1)
        assert status == 200, (
            f"the server from the fresh venv did not answer (exit code {server.poll()})"
        )
        # Basic auth is on: an anonymous request is refused.
        assert (
            requests.get(
                f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search",
                params={"max_results": 1},
                timeout=10,
            ).status_code
            == 401
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
