"""Serving cost, side by side in one run: latency of one poster through `poster-ml serve`
(MLflow's scoring server) against the same model called in-process and against the same
request with explain=true (the heatmap and cell shares), throughput of a
32-poster request, and the size of a request carrying a base64 JPEG against the same
poster as a JSON float tensor.

With --load: the served model under many clients. A fixed number of requests (one
real-size poster each, and batches of 32) from 1, 4 and 16 concurrent clients against
`poster-ml serve --workers W` and the stock `mlflow models serve --workers W`, W in 1 and
2: requests and posters per second, median and 99th-percentile latency, errors, and the
server's memory (all its processes) before and after.

    python benchmarks/bench_serving.py [--size 224] [--requests 50]
    python benchmarks/bench_serving.py --load [--requests 96] [--batches 12]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def poster_jpeg(size: int, seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = (rng.random((305, 206, 3)) * 255).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def post(port: int, body: bytes) -> float:
    started = time.perf_counter()
    call = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(call, timeout=120) as answer:
        answer.read()
    return time.perf_counter() - started


def percentiles(seconds: list[float]) -> tuple[float, float]:
    ordered = sorted(seconds)
    return statistics.median(ordered) * 1000, ordered[int(0.95 * (len(ordered) - 1))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--load", action="store_true", help="many clients, several servers")
    parser.add_argument("--batches", type=int, default=12, help="32-poster requests per load")
    arguments = parser.parse_args()
    if arguments.load:
        from serving_load import load_benchmark

        load_benchmark(arguments.size, arguments.requests or 96, arguments.batches)
        return
    arguments.requests = arguments.requests or 50
    import mlflow
    import numpy as np
    import pandas as pd
    from PIL import Image
    from posters import logged_model

    jpeg = poster_jpeg(arguments.size, 0)
    store, model_uri = logged_model("basic_cnn", arguments.size, jpeg)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "poster_ml.cli",
            "serve",
            "--model",
            model_uri,
            "--port",
            str(port),
        ],
        env=os.environ | {"MLFLOW_TRACKING_URI": store},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        one = json.dumps(
            {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(jpeg).decode()]]}}
        ).encode()
        batch = json.dumps(
            {
                "dataframe_split": {
                    "columns": ["image"],
                    "data": [
                        [base64.b64encode(poster_jpeg(arguments.size, i)).decode()]
                        for i in range(32)
                    ],
                }
            }
        ).encode()
        for _ in range(3):
            post(port, one)  # Warm-up.
        served = [post(port, one) for _ in range(arguments.requests)]
        # The same poster answered with its explanation (LayerCAM heatmap and cell shares).
        explain = json.dumps(json.loads(one) | {"params": {"explain": True}}).encode()
        post(port, explain)  # Builds the CAM model once.
        explained = [post(port, explain) for _ in range(arguments.requests)]
        batch_seconds = [post(port, batch) for _ in range(5)]
        model = mlflow.pyfunc.load_model(model_uri)
        frame = pd.DataFrame({"image": [jpeg]})
        model.predict(frame)
        in_process = []
        for _ in range(arguments.requests):
            started = time.perf_counter()
            model.predict(frame)
            in_process.append(time.perf_counter() - started)
    finally:
        server.terminate()
        server.wait(timeout=30)
    # The same poster as the decoded float tensor a client would send to a Keras model.
    pixels = np.asarray(
        Image.open(io.BytesIO(jpeg)).convert("RGB").resize((arguments.size, arguments.size)),
        dtype=np.float32,
    )
    tensor = json.dumps({"inputs": pixels[None].tolist()}).encode()
    server_median, server_p95 = percentiles(served)
    local_median, local_p95 = percentiles(in_process)
    print(
        f"basic_cnn at {arguments.size} px, {arguments.requests} requests, on {os.cpu_count()} cores"
    )
    print(f"{'':<28}{'median ms':>10}{'p95 ms':>10}")
    print(f"{'one poster, server':<28}{server_median:>10.1f}{server_p95:>10.1f}")
    print(f"{'one poster, in-process':<28}{local_median:>10.1f}{local_p95:>10.1f}")
    explained_median, explained_p95 = percentiles(explained)
    print(f"{'one poster, explain=true':<28}{explained_median:>10.1f}{explained_p95:>10.1f}")
    print(f"server / in-process median: {server_median / local_median:.2f}x")
    print(f"explain=true / plain median: {explained_median / server_median:.2f}x")
    print(
        f"32-poster request: {statistics.median(batch_seconds) * 1000:.0f} ms, {32 / statistics.median(batch_seconds):.0f} posters/s"
    )
    print(
        f"request size: base64 JPEG {len(one) / 1024:.1f} KiB, JSON float tensor {len(tensor) / 1024:.1f} KiB ({len(tensor) / len(one):.0f}x)"
    )


if __name__ == "__main__":
    main()
