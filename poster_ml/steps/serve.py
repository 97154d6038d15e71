"""Serving the champion: MLflow's scoring server behind a guard (serving/app.py), started
from this project's own environment, so nothing depends on an activated venv.

The server runs the code logged in the model (its code/ folder: the decoder, the pyfunc
and the guard as they were when it trained), not this checkout's. A model without that
folder is served by this checkout only if this checkout decodes posters as its training
data was decoded; otherwise the step refuses in one line naming both decoder versions."""

from __future__ import annotations

import json
import logging
import shlex
import sys
import tempfile
from pathlib import Path

from poster_ml.config import ServeConfig, environment
from poster_ml.data.images import InputContract
from poster_ml.processes import run_in_foreground
from poster_ml.tracking import logged_models, registry, store

log = logging.getLogger(__name__)


def serve_step(config: ServeConfig) -> int:
    """Downloads the model and runs uvicorn on the guarded scoring app until stopped."""
    store.configure_tracking()
    with tempfile.TemporaryDirectory() as folder:
        local = logged_models.download_model(config.model, folder)
        code = served_code(Path(local))
        facts = Path(folder) / "page-facts.json"
        facts.write_text(
            json.dumps({"model": config.model} | registry.served_version_facts(config.model))
        )
        variables = environment.child_environment(
            {
                "POSTER_ML_MODEL_PATH": local,
                "POSTER_ML_PAGE_FACTS": str(facts),
                "POSTER_ML_MAX_REQUEST_BYTES": str(config.max_request_mb * 2**20),
                # The model's own code first: its decoder, pyfunc and guard.
                "PYTHONPATH": environment.python_path_with(code),
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
            *served_app(Path(code)),
        ]
        log.info(
            f"serving {config.model} at http://{config.host}:{config.port}/invocations; "
            f"drop posters on its page: http://{config.host}:{config.port}/"
        )
        log.info(f"running: {shlex.join(command)}")
        # Run from the download folder: `python -m` puts the working directory first on the
        # path, and a checkout there would shadow the model's code.
        return run_in_foreground(command, variables, cwd=folder)


def served_app(code: Path) -> list[str]:
    """uvicorn's arguments for the guarded app in the served code: the app factory, or the
    module-level app of a model logged before serving became a package of its own."""
    if (code / "poster_ml" / "serving" / "app.py").is_file():
        return ["--factory", "poster_ml.serving.app:create_app"]
    return ["poster_ml.tracking.serving_app:app"]


def served_code(model: Path) -> str:
    """The folder whose poster_ml package the server imports: the model's own code, else
    (a model logged without it) this checkout, if it decodes as the model expects."""
    if (model / "code" / "poster_ml").is_dir():
        return str(model / "code")
    settings = json.loads((model / "artifacts" / "settings.json").read_text())
    InputContract.from_settings(settings).check_decoder()
    return str(Path(__file__).resolve().parents[2])
