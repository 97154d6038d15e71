"""The logged model is the product: it carries its whole input contract, is served with
its own code, explains each answer on request, serves from its own locked requirements,
and hands its Keras model to users who want to go on training it."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import encode
from PIL import Image

from poster_ml.cli import main
from poster_ml.config import PreprocessConfig
from poster_ml.data.images import DECODE_VERSION, InputContract, decode_poster
from poster_ml.data.prepare import prepare
from poster_ml.models.variants import VARIANTS, build_model
from poster_ml.serving.model import log_poster_model

ROOT = Path(__file__).resolve().parents[1]


def constant_model(size: int, probability: float) -> keras.Model:
    """basic_cnn whose output unit says `probability` for every poster."""
    model = build_model(VARIANTS["basic_cnn"], size, weights="none")
    output = model.get_layer("fresh_probability")
    kernel, bias = output.get_weights()
    logit = np.log(probability / (1 - probability))
    output.set_weights([kernel * 0, np.full_like(bias, logit)])
    return model


def logged(model: keras.Model, contract: InputContract, name: str = "basic_cnn") -> str:
    mlflow.set_experiment("poster-ml")
    example = encode(Image.new("RGB", (206, 305), (90, 90, 200)), "JPEG")
    with mlflow.start_run():
        return log_poster_model(model, contract, {}, example, name=name).model_uri


def model_folder(model_uri: str) -> Path:
    """The logged model's files in the local artifact store."""
    model_id = model_uri.removeprefix("models:/")
    return Path(mlflow.get_logged_model(model_id).artifact_location.removeprefix("file://"))


def large_posters(folder: Path, count: int) -> None:
    """Real-size JPEG posters (1236 x 1830) in class folders, half of each class."""
    rng = np.random.default_rng(0)
    for index in range(count):
        name = "fresh" if index % 2 else "rotten"
        (folder / name).mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, (61, 41, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).resize((1236, 1830), Image.Resampling.BICUBIC)
        (folder / name / f"{index}.jpg").write_bytes(encode(image, "JPEG", quality=92))


def test_a_model_trained_without_reduced_decoding_is_served_the_pixels_preprocessing_made(
    tmp_path,
):
    large_posters(tmp_path / "posters", 24)
    config = PreprocessConfig(
        source=str(tmp_path / "posters"),
        size=48,
        out=str(tmp_path / "prepared"),
        reduced_decode=False,
    )
    data = prepare(config)
    contract = InputContract.of_dataset(data.info)
    assert (contract.reduced_decode, contract.image_size) == (False, 48)
    assert contract.dataset_digest == data.digest and contract.decode_version == DECODE_VERSION
    uri = logged(constant_model(48, 0.6), contract)
    settings = json.loads((model_folder(uri) / "artifacts" / "settings.json").read_text())
    expected = {"image_size", "reduced_decode", "max_pixels", "decode_version", "class_names"}
    assert expected | {"threshold", "dataset_digest"} <= set(settings)
    served = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    row = data.split("test").iloc[0]
    poster = (tmp_path / "posters" / row["source"]).read_bytes()
    prepared = data.reader("test").read(np.array([row["row"]]))[0]
    np.testing.assert_array_equal(served.decoded(0, poster), prepared)
    # The package's default decoding (reduced) gives other pixels: the contract matters.
    assert not np.array_equal(decode_poster(poster, 48), prepared)


def test_labels_come_from_the_model_s_threshold_and_the_threshold_parameter(tmp_path):
    uri = logged(constant_model(32, 0.6), InputContract(32, threshold=0.7))
    poster = encode(Image.new("RGB", (206, 305), (200, 40, 40)), "JPEG")
    model = mlflow.pyfunc.load_model(uri)
    frame = pd.DataFrame({"image": [poster]})
    assert list(model.predict(frame)["label"]) == ["rotten"]  # 0.6 is below 0.7.
    assert list(model.predict(frame, params={"threshold": 0.5})["label"]) == ["fresh"]
    (tmp_path / "poster.jpg").write_bytes(poster)
    out = tmp_path / "predictions.csv"
    assert main(["predict", "--model", uri, str(tmp_path / "poster.jpg"), "--out", str(out)]) == 0
    assert list(pd.read_csv(out)["label"]) == ["rotten"]


def test_an_answer_explains_itself_with_the_heatmap_predict_cam_writes(tmp_path):
    uri = logged(build_model(VARIANTS["basic_cnn"], 64, weights="none"), InputContract(64))
    image = Image.new("RGB", (206, 305), (30, 30, 30))
    image.paste((240, 220, 40), (20, 20, 186, 110))  # A bright title block.
    poster = encode(image, "JPEG")
    model = mlflow.pyfunc.load_model(uri)
    plain = model.predict(pd.DataFrame({"image": [poster]}))
    assert list(plain.columns) == ["probability_fresh", "label"]  # Nothing more unasked.
    answer = model.predict(pd.DataFrame({"image": [poster]}), params={"explain": True})
    png = base64.b64decode(answer["heatmap_png"][0])
    assert Image.open(io.BytesIO(png)).size == (206, 305)  # The poster's own aspect.
    shares = json.loads(answer["cell_shares"][0])
    assert len(shares) == 36 and abs(sum(shares) - 1) < 1e-4
    (tmp_path / "posters").mkdir()
    (tmp_path / "posters" / "title.jpg").write_bytes(poster)
    arguments = [
        "predict",
        "--model",
        uri,
        str(tmp_path / "posters"),
        "--cam",
        str(tmp_path / "cam"),
    ]
    assert main([*arguments, "--out", str(tmp_path / "predictions.csv")]) == 0
    assert (tmp_path / "cam" / "title.cam.png").read_bytes() == png
    # Beside it, the same regions and design attributes the answer holds.
    written = json.loads((tmp_path / "cam" / "title.regions.json").read_text())
    assert written["regions"] == json.loads(answer["regions"][0])
    assert written["design"] == json.loads(answer["design"][0])


def test_the_keras_model_inside_can_be_trained_further(tmp_path):
    uri = logged(build_model(VARIANTS["basic_cnn"], 32, weights="none"), InputContract(32))
    # The documented way on for Keras users (README, "Your Keras model").
    model = mlflow.pyfunc.load_model(uri).unwrap_python_model().model
    model.compile(optimizer="adam", loss="binary_crossentropy")
    images = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3)).astype("float32")
    history = model.fit(images, np.array([0, 1, 0, 1.0]), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def serve(uri: str, port: int, folder: Path, capture: bool = False) -> subprocess.Popen:
    command = [sys.executable, "-m", "poster_ml.cli", "serve", "--model", uri]
    environment = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=folder,
        env=environment,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE if capture else subprocess.DEVNULL,
        text=True,
    )


def test_poster_ml_serve_runs_the_code_logged_in_the_model(tmp_path):
    from test_serving import free_port, request, wait_for_ping

    uri = logged(constant_model(32, 0.6), InputContract(32))
    logged_code = model_folder(uri) / "code" / "poster_ml" / "data" / "images.py"
    # The model's own copy of the package says so in every label; this checkout does not.
    text = logged_code.read_text()
    logged_code.write_text(
        text.replace(
            "return np.where(predicted_fresh(probabilities, cut), fresh, rotten)",
            'return np.full(len(probabilities), "model code")',
        )
    )
    assert logged_code.read_text() != text
    port = free_port()
    process = serve(uri, port, tmp_path)
    try:
        wait_for_ping(process, port)
        image = base64.b64encode(encode(Image.new("RGB", (206, 305)), "JPEG")).decode()
        payload = {"dataframe_records": [{"image": image}]}
        status, body = request(port, json.dumps(payload).encode())
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert status == 200, body
    assert json.loads(body)["predictions"][0]["label"] == "model code"


def test_a_model_without_its_code_and_from_another_decoder_is_refused_in_one_line(tmp_path, capsys):
    uri = logged(constant_model(32, 0.6), InputContract(32))
    folder = model_folder(uri)
    shutil.rmtree(folder / "code")
    settings = json.loads((folder / "artifacts" / "settings.json").read_text())
    settings["decode_version"] = DECODE_VERSION + 98
    (folder / "artifacts" / "settings.json").write_text(json.dumps(settings))
    capsys.readouterr()  # MLflow's own notes while the model was logged.
    assert main(["serve", "--model", uri, "--port", "1"]) == 1
    printed = capsys.readouterr().err
    error = [line for line in printed.splitlines() if "error:" in line]
    assert len(error) == 1 and "Traceback" not in printed
    assert f"version {DECODE_VERSION + 98}" in error[0] and f"version {DECODE_VERSION}" in error[0]


def test_the_model_s_environment_pins_every_package_it_runs_with():
    uri = logged(constant_model(32, 0.6), InputContract(32))
    folder = model_folder(uri)
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert "-c constraints.txt" in requirements
    pins = {
        name.lower().replace("_", "-"): pinned
        for name, pinned in (
            line.split("==") for line in (folder / "constraints.txt").read_text().splitlines()
        )
    }
    from importlib.metadata import version

    # Transitive packages too, at the versions the tests run with.
    for package in ("protobuf", "h5py", "ml-dtypes", "absl-py"):
        assert pins[package] == version(package), package


@pytest.mark.slow
def test_the_model_serves_from_its_own_locked_requirements_with_uv(tmp_path):
    """`mlflow models serve --env-manager uv` builds an environment from the model's own
    requirements.txt, constraints.txt and python_env.yaml (not this project's venv), and
    answers a real JPEG and a bad request."""
    from test_serving import free_port, request, wait_for_ping

    uri = logged(constant_model(32, 0.6), InputContract(32))
    port = free_port()
    environment = os.environ | {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
        "MLFLOW_ENV_ROOT": str(tmp_path / "envs"),
    }
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", uri]
    command += ["--env-manager", "uv", "-h", "127.0.0.1", "-p", str(port)]
    with open(tmp_path / "server.log", "w") as log:
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=log)
        try:
            wait_for_ping(process, port, seconds=1200)
            image = base64.b64encode(encode(Image.new("RGB", (206, 305)), "JPEG")).decode()
            good = request(port, json.dumps({"dataframe_records": [{"image": image}]}).encode())
            bad = request(port, json.dumps({"dataframe_records": [{"image": "no!"}]}).encode())
        except RuntimeError:
            raise RuntimeError((tmp_path / "server.log").read_text()[-3000:]) from None
        finally:
            process.terminate()
            process.wait(timeout=60)
    assert good[0] == 200, good
    assert abs(json.loads(good[1])["predictions"][0]["probability_fresh"] - 0.6) < 1e-4
    assert 400 <= bad[0] < 500, bad
    # It ran in an environment built for the model, with the pinned TensorFlow in it.
    (tensorflow,) = tmp_path.glob("envs/*/lib/python3*/site-packages/tensorflow-*.dist-info")
    from importlib.metadata import version

    assert tensorflow.name.startswith(f"tensorflow-{version('tensorflow')}.")


def test_a_model_logged_before_serving_became_a_package_still_loads_in_this_process():
    """A champion registered by an earlier version of the package names its pyfunc by the
    old module; the register gate and evaluate load it in a process that has imported this
    package, so that name must still lead to the pyfunc."""
    uri = logged(constant_model(32, 0.6), InputContract(32))
    code = model_folder(uri) / "served_model.py"
    old = code.read_text().replace("poster_ml.serving.model", "poster_ml.tracking.pyfunc_model")
    assert "poster_ml.tracking.pyfunc_model import PosterClassifier" in old
    code.write_text(old)
    image = encode(Image.new("RGB", (206, 305)), "JPEG")
    answer = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"image": [image]}))
    assert answer["probability_fresh"].tolist() == pytest.approx([0.6])
