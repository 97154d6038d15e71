"""What the serving and predict benchmarks share: a logged model, and real-size poster
JPEGs: the synthetic generator's drawings, enlarged
to a one-sheet's 1236 x 1830 pixels with film grain, so that each file decodes and weighs
like a scanned poster (about 0.7 MB at quality 90) rather than like a flat drawing."""

from __future__ import annotations

import concurrent.futures
import io
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 1236, 1830
GRAIN = 7.0  # Standard deviation of the grain, in grey levels.


def real_size_jpeg(seed: int) -> bytes:
    from poster_ml.data.synthetic import draw_poster

    rng = np.random.default_rng(seed)
    drawing, *_ = draw_poster(rng, fresh=bool(seed % 2))
    pixels = np.asarray(drawing.resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC), np.float32)
    pixels += rng.normal(0, GRAIN, (HEIGHT, WIDTH, 1)).astype(np.float32)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _write(folder: Path, seed: int) -> None:
    path = folder / f"poster{seed:05d}.jpg"
    if not path.is_file():
        path.write_bytes(real_size_jpeg(seed))


def real_size_posters(folder: Path, count: int) -> list[Path]:
    """`count` real-size posters in `folder` (made with every core; kept between runs)."""
    folder.mkdir(parents=True, exist_ok=True)
    with concurrent.futures.ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_write, [folder] * count, range(count), chunksize=16))
    return [folder / f"poster{seed:05d}.jpg" for seed in range(count)]


def logged_model(variant: str, size: int, example: bytes) -> tuple[str, str]:
    """A fresh `variant` logged as this project's pyfunc model: (tracking store, model URI)."""
    import mlflow

    from poster_ml.data.images import InputContract
    from poster_ml.models.variants import VARIANTS, build_model
    from poster_ml.serving.model import log_poster_model

    folder = tempfile.mkdtemp()
    store = f"sqlite:///{folder}/mlflow.db"
    mlflow.set_tracking_uri(store)
    experiment = mlflow.create_experiment("benchmark", artifact_location=f"{folder}/artifacts")
    with mlflow.start_run(experiment_id=experiment):
        model = build_model(VARIANTS[variant], size)
        info = log_poster_model(model, InputContract(size), {}, example, name=variant)
    return store, info.model_uri
