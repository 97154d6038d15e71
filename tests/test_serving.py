"""Serving for real: `mlflow models serve` and `poster-ml serve` processes on loopback,
every JSON format with a real JPEG, and every bad request answered 4xx in under 1 KB."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import encode, png_header_only
from mlflow.tracking import MlflowClient
from PIL import Image

from poster_ml.data.annotations import ATTRIBUTES


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(
    port: int, body: bytes, path: str = "/invocations", method: str = "POST"
) -> tuple[int, bytes]:
    call = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body if method == "POST" else None,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(call, timeout=120) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def model_uri(trained_store):
    store, _ = trained_store
    client = MlflowClient(store)
    run = next(
        r
        for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
        if r.data.tags.get("variant") == "basic_cnn"
    )
    return store, run.data.tags["model_uri"]


def start(command: list[str], store: str, port: int, folder: Path):
    environment = os.environ | {
        "MLFLOW_TRACKING_URI": store,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),
    }
    process = subprocess.Popen(
        command, cwd=folder, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for_ping(process, port)
    return process


def wait_for_ping(process: subprocess.Popen, port: int, seconds: float = 180) -> None:
    """Returns once the server answers /ping; a server that exits or stays silent fails."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if request(port, b"", "/ping", "GET")[0] == 200:
                return
        except OSError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("the server did not answer /ping in time")


@pytest.fixture(scope="module", params=["mlflow models serve", "poster-ml serve"])
def server(model_uri, tmp_path_factory, request):
    store, uri = model_uri
    port = free_port()
    folder = tmp_path_factory.mktemp("server")
    if request.param == "mlflow models serve":
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            uri,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ]
    else:
        command = [
            sys.executable,
            "-m",
            "poster_ml.cli",
            "serve",
            "--model",
            uri,
            "--port",
            str(port),
            "--max-request-mb",
            "8",
        ]
    process = start(command, store, port, folder)
    yield request.param, port
    process.terminate()
    process.wait(timeout=30)


def jpeg_base64() -> str:
    return base64.b64encode(encode(Image.new("RGB", (206, 305), (200, 40, 40)), "JPEG")).decode()


def formats(image: str) -> dict[str, dict]:
    return {
        "dataframe_split": {"dataframe_split": {"columns": ["image"], "data": [[image]]}},
        "dataframe_records": {"dataframe_records": [{"image": image}]},
        "inputs": {"inputs": {"image": [image]}},
        "instances": {"instances": [{"image": image}]},
    }


def test_a_real_jpeg_in_every_format_gets_a_probability(server):
    _, port = server
    for name, payload in formats(jpeg_base64()).items():
        status, body = request(port, json.dumps(payload).encode())
        assert status == 200, (name, body[:300])
        predictions = json.loads(body)["predictions"]
        assert (
            len(predictions) == 1
            and 0 <= predictions[0]["probability_fresh"] <= 1
            and predictions[0]["label"] in ("fresh", "rotten")
        ), name


def test_explain_true_adds_each_poster_s_heatmap_in_every_format(server):
    _, port = server
    for name, payload in formats(jpeg_base64()).items():
        status, body = request(port, json.dumps(payload | {"params": {"explain": True}}).encode())
        assert status == 200, (name, body[:300])
        (answer,) = json.loads(body)["predictions"]
        heatmap = Image.open(io.BytesIO(base64.b64decode(answer["heatmap_png"])))
        assert heatmap.format == "PNG" and heatmap.size == (206, 305), name
        assert len(json.loads(answer["cell_shares"])) == 36, name
        # The detected regions, each with the map's share inside, and the design attributes.
        for region in json.loads(answer["regions"]):
            assert region["kind"] in ("title", "text", "face"), name
            assert len(region["box"]) == 4 and all(0 <= v <= 1 for v in region["box"]), name
            assert 0 <= region["map_share"] <= 1, name
        design = json.loads(answer["design"])
        assert design["annotation"] == "ok" and set(ATTRIBUTES) <= set(design), name


def test_a_batch_of_posters_in_one_request(server):
    _, port = server
    status, body = request(
        port,
        json.dumps(
            {"dataframe_split": {"columns": ["image"], "data": [[jpeg_base64()]] * 5}}
        ).encode(),
    )
    assert status == 200 and len(json.loads(body)["predictions"]) == 5


def bad_requests() -> dict[str, bytes]:
    truncated = base64.b64encode(
        encode(Image.new("RGB", (200, 300), (9, 99, 199)), "JPEG")[:300]
    ).decode()

    def split(value):
        return json.dumps({"dataframe_split": {"columns": ["image"], "data": [[value]]}}).encode()

    return {
        "invalid base64": split("%%% not base64 %%%"),
        "not an image": split(base64.b64encode(b"just some text, no poster").decode()),
        "truncated image": split(truncated),
        "decompression bomb": split(base64.b64encode(png_header_only(90_000, 90_000)).decode()),
        "empty list": json.dumps({"dataframe_split": {"columns": ["image"], "data": []}}).encode(),
        "missing column": json.dumps(
            {"dataframe_split": {"columns": ["poster"], "data": [["x"]]}}
        ).encode(),
        "malformed JSON": b'{"dataframe_split": {"columns": ["image"], "data": [["abc"',
        "inputs, not an image": json.dumps({"inputs": {"image": ["A" * 4_000_000]}}).encode(),
        "tens of megabytes": b'{"x": "' + b"A" * 30_000_000 + b'"',
    }


def test_every_bad_request_is_a_short_4xx_and_the_server_goes_on(server):
    kind, port = server
    for name, body in bad_requests().items():
        if kind == "mlflow models serve" and name in ("tens of megabytes", "inputs, not an image"):
            # The stock server writes the request itself into these answers (a malformed
            # body; the `inputs` dict of a failed prediction): poster-ml serve exists for them.
            continue
        status, answer = request(port, body)
        assert 400 <= status < 500, (name, status, answer[:200])
        assert len(answer) < 1024, (name, len(answer), answer[:200])
        assert "error_code" in json.loads(answer) and "%%%" not in answer.decode(), name
    assert request(port, b"", "/ping", "GET")[0] == 200
    assert request(port, json.dumps(formats(jpeg_base64())["inputs"]).encode())[0] == 200


def test_the_signature_and_input_example_validate_in_every_format(model_uri, tmp_path):
    import mlflow

    store, uri = model_uri
    mlflow.set_tracking_uri(store)
    request_file, answer_file = tmp_path / "request.json", tmp_path / "answer.json"
    for name, payload in formats(jpeg_base64()).items():
        # MLflow's own predict reads a request as the scoring server does.
        request_file.write_text(json.dumps(payload))
        mlflow.models.predict(
            uri,
            input_path=str(request_file),
            content_type="json",
            env_manager="local",
            output_path=str(answer_file),
        )
        predictions = json.loads(answer_file.read_text())["predictions"]
        assert 0 <= float(predictions[0]["probability_fresh"]) <= 1, name
    example = mlflow.models.Model.load(uri).load_input_example(
        mlflow.artifacts.download_artifacts(uri)
    )
    assert list(example.columns) == ["image"]


def test_predict_scores_good_files_and_rejects_bad_ones(model_uri, tmp_path, capsys, monkeypatch):
    from poster_ml.cli import main

    store, uri = model_uri
    folder = tmp_path / "posters"
    (folder / "more").mkdir(parents=True)
    for index in range(4):
        (folder / f"good{index}.jpg").write_bytes(
            encode(Image.new("RGB", (206, 305), (40 * index, 90, 200)), "JPEG")
        )
    (folder / "more" / "good.png").write_bytes(encode(Image.new("RGB", (60, 90), (1, 2, 3)), "PNG"))
    (folder / "notes.txt").write_text("not a poster")
    (folder / "truncated.jpg").write_bytes(
        encode(Image.new("RGB", (200, 300), (9, 99, 199)), "JPEG")[:300]
    )
    (folder / "bomb.png").write_bytes(png_header_only(90_000, 90_000))
    single = tmp_path / "single.webp"
    single.write_bytes(encode(Image.new("RGB", (60, 90), (200, 2, 3)), "WEBP"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    out = tmp_path / "out" / "predictions.csv"
    assert (
        main(
            [
                "predict",
                "--model",
                uri,
                str(folder),
                str(single),
                "--out",
                str(out),
                "--cam",
                str(tmp_path / "cams"),
            ]
        )
        == 0
    )
    import pandas as pd

    predictions, rejects = pd.read_csv(out), pd.read_csv(out.with_suffix(".rejects.csv"))
    assert len(predictions) + len(rejects) == 9 and len(predictions) == 6
    assert set(rejects["reason"]) == {"not an image", "truncated image", "decompression bomb"}
    assert predictions["probability_fresh"].between(0, 1).all()
    assert len(list((tmp_path / "cams").glob("*.cam.png"))) == 6
    assert "scored 6, rejected 3 of 9 files" in capsys.readouterr().out


def test_predict_scores_the_test_split_of_a_prepared_dataset(
    model_uri, synthetic_dataset, tmp_path, capsys, monkeypatch
):
    from poster_ml.cli import main

    store, uri = model_uri
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    out = tmp_path / "test-split.csv"
    data = str(synthetic_dataset.path)
    assert main(["predict", "--model", uri, "--data", data, "--out", str(out)]) == 0
    import pandas as pd

    predictions, test = pd.read_csv(out, dtype={"id": str}), synthetic_dataset.split("test")
    assert list(predictions["id"]) == list(test["id"])
    assert list(predictions["class"]) == list(test["class"])
    assert predictions["probability_fresh"].between(0, 1).all()
    assert main(["predict", "--model", uri, "--data", data, str(tmp_path)]) == 1
    assert "not both" in capsys.readouterr().err


def test_a_dockerfile_can_be_generated_for_the_model(model_uri, tmp_path):
    """`mlflow models build-docker` needs a Docker daemon; generating its Dockerfile does not."""
    store, uri = model_uri
    environment = os.environ | {"MLFLOW_TRACKING_URI": store}
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "generate-dockerfile",
            "-m",
            uri,
            "-d",
            str(tmp_path / "docker"),
            "--env-manager",
            "local",
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    dockerfile = (tmp_path / "docker" / "Dockerfile").read_text()
    assert "mlflow" in dockerfile and (tmp_path / "docker" / "model_dir").is_dir()


def test_a_chunked_upload_over_the_limit_gets_413_and_one_ctrl_c_stops_the_server_gracefully(
    model_uri, tmp_path
):
    import signal

    import requests

    store, uri = model_uri
    port = free_port()
    environment = os.environ | {"MLFLOW_TRACKING_URI": store}
    command = [
        sys.executable,
        "-m",
        "poster_ml.cli",
        "serve",
        "--model",
        uri,
        "--port",
        str(port),
        "--max-request-mb",
        "8",
    ]
    # Its own process group, as a shell gives a foreground job: Ctrl-C goes to the group.
    process = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if request(port, b"", "/ping", "GET")[0] == 200:
                    break
            except OSError:
                time.sleep(0.5)

        def chunks(total: int = 200 * 2**20, size: int = 2**20):
            for _ in range(total // size):
                yield b"A" * size

        # No Content-Length: requests sends a generator as Transfer-Encoding: chunked.
        answer = requests.post(
            f"http://127.0.0.1:{port}/invocations",
            data=chunks(),
            headers={"Content-Type": "application/json"},
            timeout=120,
        )
        assert answer.status_code == 413 and answer.json()["error_code"] == "REQUEST_TOO_LARGE", (
            answer.text[:300]
        )
        assert request(port, b"", "/ping", "GET")[0] == 200
        assert request(port, json.dumps(formats(jpeg_base64())["inputs"]).encode())[0] == 200
        os.killpg(process.pid, signal.SIGINT)
        output = process.communicate(timeout=60)[0]
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output[-2000:]
    assert (
        "Finished server process" in output
        and "Force exit" not in output
        and "Traceback" not in output
    )
