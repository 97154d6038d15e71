"""The logged model: a pyfunc that takes poster files and returns the probability of fresh.

Requests carry a column `image` of encoded poster bytes (base64 in JSON). Each is decoded
by the same function as preprocessing, so a served model sees exactly what it trained on.
"""

from __future__ import annotations

import base64
import binascii
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
from mlflow.types import ColSpec, Schema

from poster_ml import DECISION_THRESHOLD
from poster_ml.errors import first_line

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # poster_ml/, logged with the model.
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("binary", "image")]),
    outputs=Schema([ColSpec("double", "probability_fresh"), ColSpec("string", "label")]),
)


class PosterClassifier(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]  # Lazily exported by MLflow.
    """Wraps a Keras poster model: encoded images in, probability of fresh and label out."""

    def load_context(self, context):
        import keras

        import poster_ml.models.bases  # noqa: F401  Registers the custom preprocessing layer.
        from poster_ml.models.batching import MicroBatcher
        from poster_ml.models.predict import predict_probabilities

        self.model = keras.saving.load_model(context.artifacts["keras_model"], compile=False)
        self.settings = json.loads(Path(context.artifacts["settings"]).read_text())
        # Concurrent requests (the scoring server answers each in a thread) share forward
        # passes; one caller alone is not delayed. Its thread starts on the first request.
        self.batcher = MicroBatcher(partial(predict_probabilities, self.model))

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Scores a batch of posters: a DataFrame (or the scoring server's dict) with a
        column `image` of encoded files, as raw bytes or base64 text. Every error it
        raises is one short line that never repeats the request."""
        return self.score(model_input)

    def score(self, model_input) -> pd.DataFrame:
        from poster_ml.data.images import PosterError, decode_poster

        if "image" not in model_input:
            raise MlflowException(
                "the input needs a column 'image' of encoded poster files (base64 in JSON)",
                INVALID_PARAMETER_VALUE,
            )
        values = list(model_input["image"])
        if not values:
            raise MlflowException("the request holds no posters", INVALID_PARAMETER_VALUE)
        size, threshold = self.settings["image_size"], self.settings["threshold"]
        images = []
        for position, value in enumerate(values):
            try:
                images.append(decode_poster(as_bytes(value), size))
            except (PosterError, ValueError, binascii.Error) as error:
                raise MlflowException(
                    f"image {position}: {first_line(error, 200)}", INVALID_PARAMETER_VALUE
                ) from None
        probabilities = self.batcher(np.stack(images))
        return pd.DataFrame(
            {
                "probability_fresh": probabilities.astype(np.float64),
                "label": np.where(probabilities >= threshold, "fresh", "rotten"),
            }
        )


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
    """Pinned requirements of the served model, taken from this environment."""
    from importlib.metadata import version

    return [
        f"{name}=={version(name)}"
        for name in ("tensorflow", "keras", "mlflow", "numpy", "pandas", "pillow")
    ]


def log_poster_model(
    model,
    image_size: int,
    configs: dict,
    input_example_jpeg: bytes,
    name: str = "model",
    params: dict | None = None,
):
    """Logs `model` as a pyfunc named `name` (the variant's) with its hyperparameters as model
    params, signature, input example, settings and this package's code."""
    with tempfile.TemporaryDirectory() as folder:
        keras_path = os.path.join(folder, "model.keras")
        model.save(keras_path)
        settings_path = os.path.join(folder, "settings.json")
        Path(settings_path).write_text(
            json.dumps(
                {"image_size": image_size, "threshold": DECISION_THRESHOLD, "config": configs},
                indent=2,
                default=str,
            )
        )
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).with_name("served_model.py")),
            artifacts={"keras_model": keras_path, "settings": settings_path},
            code_paths=[str(PACKAGE_DIR)],
            signature=SIGNATURE,
            input_example=pd.DataFrame({"image": [input_example_jpeg]}),
            pip_requirements=requirements(),
            params={key: str(value) for key, value in (params or {}).items()},
        )
