"""The logged model: a pyfunc that takes poster files and returns the probability of fresh.

Requests carry a column `image` of encoded poster bytes (base64 in JSON). Each is decoded
by the same function as preprocessing, so a served model sees exactly what it trained on.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from poster_ml.data.images import InputContract
from poster_ml.errors import first_line

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # poster_ml/, logged with the model.
OUTPUTS = Schema(
    [
        ColSpec("double", "probability_fresh"),
        ColSpec("string", "label"),
        # With explain=true only: the LayerCAM overlay (PNG, base64) and the map's share of
        # mass on each cell of the 6 x 6 grid, row by row.
        ColSpec("string", "heatmap_png", required=False),
        ColSpec("string", "cell_shares", required=False),
        # With explain=true: the detected regions (JSON: kind, box as shares of the poster's
        # width and height, the map's share of mass inside) and the design attributes (JSON).
        ColSpec("string", "regions", required=False),
        ColSpec("string", "design", required=False),
    ]
)


def signature(contract: InputContract) -> ModelSignature:
    """Posters in; probability and label out; `explain` and `threshold` (the model's own by
    default) as inference parameters."""
    return ModelSignature(
        inputs=Schema([ColSpec("binary", "image")]),
        outputs=OUTPUTS,
        params=ParamSchema(
            [
                ParamSpec("explain", "boolean", False),
                ParamSpec("threshold", "double", contract.threshold),
            ]
        ),
    )


class PosterClassifier(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]  # Lazily exported by MLflow.
    """Wraps a Keras poster model: encoded images in, probability of fresh and label out.

    `model` is the Keras model (`mlflow.pyfunc.load_model(uri).unwrap_python_model().model`
    hands it to a user who wants to go on training it) and `contract` its InputContract."""

    def load_context(self, context):
        import keras

        import poster_ml.models.bases  # noqa: F401  Registers the custom preprocessing layer.
        from poster_ml.models.predict import predict_probabilities
        from poster_ml.serving.batching import MicroBatcher

        self.model = keras.saving.load_model(context.artifacts["keras_model"], compile=False)
        self.settings = json.loads(Path(context.artifacts["settings"]).read_text())
        self.contract = InputContract.from_settings(self.settings)
        self.cam_model = None  # Built on the first request that asks for explanations.
        # Concurrent requests (the scoring server answers each in a thread) share forward
        # passes; one caller alone is not delayed. Its thread starts on the first request.
        self.batcher = MicroBatcher(partial(predict_probabilities, self.model))

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Scores a batch of posters: a DataFrame (or the scoring server's dict) with a
        column `image` of encoded files, as raw bytes or base64 text. Every error it
        raises is one short line that never repeats the request."""
        params = params or {}
        return self.score(model_input, bool(params.get("explain")), params.get("threshold"))

    def score(self, model_input, explain: bool = False, threshold=None) -> pd.DataFrame:
        if "image" not in model_input:
            raise MlflowException(
                "the input needs a column 'image' of encoded poster files (base64 in JSON)",
                INVALID_PARAMETER_VALUE,
            )
        files = [
            as_checked_bytes(position, value) for position, value in enumerate(model_input["image"])
        ]
        if not files:
            raise MlflowException("the request holds no posters", INVALID_PARAMETER_VALUE)
        images = np.stack([self.decoded(position, data) for position, data in enumerate(files)])
        probabilities = self.batcher(images)
        answer = pd.DataFrame(
            {
                "probability_fresh": probabilities.astype(np.float64),
                "label": self.contract.labels(probabilities, threshold),
            }
        )
        return self.explained(answer, images, files) if explain else answer

    def decoded(self, position: int, data: bytes) -> np.ndarray:
        from poster_ml.data.images import PosterError

        try:
            return self.contract.decode(data)
        except PosterError as error:
            raise MlflowException(
                f"image {position}: {first_line(error, 200)}", INVALID_PARAMETER_VALUE
            ) from None

    def explained(self, answer: pd.DataFrame, images: np.ndarray, files: list[bytes]):
        """The answer with each poster's heatmap, cell shares, regions and design (serving/overlay.py)."""
        from poster_ml.serving.overlay import poster_explanations

        if self.cam_model is None:
            from poster_ml.explain.cam import poster_cam_model

            self.cam_model = poster_cam_model(self.model)
        explained = poster_explanations(self.cam_model, images, files)
        return answer.assign(
            heatmap_png=[base64.b64encode(png).decode("ascii") for png in explained.pngs],
            cell_shares=[
                json.dumps([round(float(v), 6) for v in row]) for row in explained.cell_shares
            ],
            regions=[json.dumps(found) for found in explained.regions],
            design=[json.dumps(design) for design in explained.designs],
        )


def as_checked_bytes(position: int, value) -> bytes:
    try:
        return as_bytes(value)
    except (ValueError, binascii.Error) as error:
        raise MlflowException(
            f"image {position}: {first_line(error, 200)}", INVALID_PARAMETER_VALUE
        ) from None


IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"RIFF", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


def as_bytes(value) -> bytes:
    """The encoded file in either way a request carries it: raw bytes, or base64 text (or
    the bytes of that text, as MLflow passes the `inputs` and `instances` formats on)."""
    if isinstance(value, (bytes, bytearray, np.bytes_)):
        value = bytes(value)
        if value.startswith(IMAGE_SIGNATURES):
            return value
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            return value  # Not base64: the decoder says what it is not.
    if isinstance(value, str):
        try:
            return base64.b64decode(value.strip(), validate=True)
        except binascii.Error:
            raise ValueError("invalid base64 text") from None
    raise ValueError(f"expected encoded image bytes or base64 text, got {type(value).__name__}")


def requirements() -> list[str]:
    """The served model's top-level requirements, pinned to this environment's versions."""
    from importlib.metadata import version

    return [
        f"{name}=={version(name)}"
        for name in (
            *("tensorflow", "keras", "mlflow", "numpy", "pandas", "pillow"),
            *("rapidocr-onnxruntime", "dlib-bin"),
        )
    ]


def constraints(folder: str) -> str:
    """A constraints file pinning every package of this environment (the versions the tests
    ran with), so that the model's environment rebuilt later installs the same versions of
    every transitive dependency too. Returns its path."""
    from importlib.metadata import distributions

    pins = sorted(
        {
            f"{dist.metadata['Name']}=={dist.version}"
            for dist in distributions()
            if dist.metadata["Name"] and dist.metadata["Name"].lower() != "poster-ml"
        }
    )
    path = os.path.join(folder, "constraints.txt")
    Path(path).write_text("\n".join(pins) + "\n")
    return path


def log_poster_model(
    model,
    contract: InputContract,
    configs: dict,
    input_example_jpeg: bytes,
    name: str = "model",
    params: dict | None = None,
):
    """Logs `model` as a pyfunc named `name` (the variant's) with its hyperparameters as model
    params, signature, input example, its input contract and config (settings.json), this
    package's code, and its environment locked by constraints."""
    with tempfile.TemporaryDirectory() as folder:
        keras_path = os.path.join(folder, "model.keras")
        model.save(keras_path)
        settings_path = os.path.join(folder, "settings.json")
        settings = dataclasses.asdict(contract) | {"config": configs}
        Path(settings_path).write_text(json.dumps(settings, indent=2, default=str))
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).with_name("served_model.py")),
            artifacts={"keras_model": keras_path, "settings": settings_path},
            code_paths=[str(PACKAGE_DIR)],
            signature=signature(contract),
            input_example=pd.DataFrame({"image": [input_example_jpeg]}),
            pip_requirements=[*requirements(), f"-c {constraints(folder)}"],
            params={key: str(value) for key, value in (params or {}).items()},
        )
