"""Batch prediction near its limit, side by side in one run: `poster-ml predict` on a
folder of real-size JPEG posters (1236 x 1830), end to end, beside its two stages measured
alone on the same posters: decoding to the model's size with every core, and the model's
forward pass on posters already decoded. Then peak memory of predict on the whole folder
against a quarter of it.

    python benchmarks/bench_predict.py [--posters 2000] [--size 224] [--variant basic_cnn]

Each predict runs in a process of its own, timed from inside (the model's loading
included, TensorFlow's import not) and with its own peak RSS.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from posters import logged_model, real_size_posters

TIMED_PREDICT = """
import json, resource, sys, time
from poster_ml.cli import main
started = time.perf_counter()
code = main(["predict", "--model", sys.argv[1], sys.argv[2], "--out", sys.argv[3]])
print(json.dumps({"seconds": time.perf_counter() - started, "code": code,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def timed_predict(model_uri: str, store: str, folder: Path, out: Path) -> dict:
    finished = subprocess.run(
        [sys.executable, "-c", TIMED_PREDICT, model_uri, str(folder), str(out)],
        env=os.environ | {"MLFLOW_TRACKING_URI": store},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posters", type=int, default=2000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--variant", default="basic_cnn")
    parser.add_argument("--batch-size", type=int, default=64)
    arguments = parser.parse_args()
    import numpy as np

    from poster_ml.data.images import InputContract
    from poster_ml.models.predict import predict_probabilities
    from poster_ml.steps.predict import decoded_or_reject
    from poster_ml.tracking.logged_models import load_poster_model

    root = Path(tempfile.gettempdir()) / "poster-ml-bench-posters"
    files = real_size_posters(root, arguments.posters)
    store, model_uri = logged_model(arguments.variant, arguments.size, files[0].read_bytes())
    whole, quarter = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    for index, path in enumerate(files):  # Links: the same files, in folders of their own.
        (whole / path.name).symlink_to(path)
        if index < len(files) // 4:
            (quarter / path.name).symlink_to(path)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
        contract = InputContract(arguments.size)
        decoded = list(pool.map(decoded_or_reject, files, [contract] * len(files)))
    decode_rate = len(files) / (time.perf_counter() - started)

    import mlflow

    mlflow.set_tracking_uri(store)
    model, _ = load_poster_model(model_uri)
    images = np.stack(decoded)
    predict_probabilities(model, images[: arguments.batch_size])  # Warm-up.
    started = time.perf_counter()
    for start in range(0, len(images), arguments.batch_size):
        predict_probabilities(model, images[start : start + arguments.batch_size])
    model_rate = len(images) / (time.perf_counter() - started)
    del images, decoded

    end_to_end = timed_predict(model_uri, store, whole, whole / "predictions.csv")
    small = timed_predict(model_uri, store, quarter, quarter / "predictions.csv")
    rate = len(files) / end_to_end["seconds"]
    # The command's fixed cost (TensorFlow's start, the model's loading, the run) cancels
    # out between the two folders: what is left is the pipeline's own pace.
    steady = (len(files) - len(files) // 4) / (end_to_end["seconds"] - small["seconds"])
    slower = min(decode_rate, model_rate)
    in_turn = 1 / (1 / decode_rate + 1 / model_rate)
    print(
        f"{arguments.variant} at {arguments.size} px, {len(files)} posters of 1236 x 1830, "
        f"batches of {arguments.batch_size}, {os.cpu_count()} cores"
    )
    print(f"decoding alone, every core:         {decode_rate:8.1f} posters/s")
    print(f"model alone, decoded posters:       {model_rate:8.1f} posters/s")
    print(f"both stages in turn (no overlap):   {in_turn:8.1f} posters/s")
    print(
        f"poster-ml predict, whole command:   {rate:8.1f} posters/s "
        f"({end_to_end['seconds']:.1f} s, of which about "
        f"{end_to_end['seconds'] - len(files) / steady:.0f} s start-up)"
    )
    print(f"poster-ml predict, steady pace:     {steady:8.1f} posters/s")
    print(f"steady pace / slower stage:         {steady / slower:8.2f} (goal at least 0.8)")
    print(f"steady pace / stages in turn:       {steady / in_turn:8.2f} (above 1: they overlap)")
    print(
        f"peak RSS: {len(files)} posters {end_to_end['peak_mb']:.0f} MB, {len(files) // 4} posters "
        f"{small['peak_mb']:.0f} MB: {end_to_end['peak_mb'] / small['peak_mb']:.2f}x (goal at most 1.1x)"
    )


if __name__ == "__main__":
    main()
