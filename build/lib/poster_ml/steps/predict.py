"""Batch prediction: poster files and folders in, a predictions CSV out, bad files in a
rejects CSV beside it with their reasons (the good ones are still scored), and, if asked,
one class-activation-map overlay per poster."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from poster_ml import CLASS_NAMES, predicted_fresh
from poster_ml.config import PredictConfig
from poster_ml.data.images import PosterError, decode_poster
from poster_ml.errors import DatasetError
from poster_ml.tracking import artifacts, loading, runs


def list_files(paths: list[str]) -> list[Path]:
    """Every file named or inside a named folder (recursively; hidden ones skipped), sorted."""
    files = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            files.append(path)
        else:
            raise DatasetError(f"no such file or folder: {name}")
    return files


def predict_step(config: PredictConfig) -> pd.DataFrame:
    from poster_ml.models.predict import predict_probabilities

    files = list_files(config.paths.split())
    if not files:
        raise DatasetError("no poster files given; name files or folders to score")
    with runs.step_run("predict", {"predict": config}, seed=0):
        model, settings = loading.load_poster_model(config.model)
        scored, rejected = [], []
        for start in tqdm(
            range(0, len(files), config.batch_size), desc="scoring posters", unit="batch"
        ):
            batch, images = [], []
            for path in files[start : start + config.batch_size]:
                try:
                    images.append(decode_poster(path.read_bytes(), settings["image_size"]))
                    batch.append(path)
                except (PosterError, OSError) as error:
                    rejected.append(
                        {
                            "path": str(path),
                            "reason": getattr(error, "reason", "unreadable file"),
                            "detail": str(error).splitlines()[0][:200],
                        }
                    )
            if images:
                probabilities = predict_probabilities(model, np.stack(images))
                scored += [
                    {
                        "path": str(path),
                        "probability_fresh": float(p),
                        "label": CLASS_NAMES[int(predicted_fresh(p))],
                    }
                    for path, p in zip(batch, probabilities, strict=True)
                ]
                if config.cam:
                    write_overlays(model, np.stack(images), batch, probabilities, Path(config.cam))
        predictions = pd.DataFrame(scored, columns=["path", "probability_fresh", "label"])
        rejects = pd.DataFrame(rejected, columns=["path", "reason", "detail"])
        out = Path(config.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        predictions.to_csv(out, index=False)
        rejects.to_csv(out.with_suffix(".rejects.csv"), index=False)
        artifacts.log_files([out, out.with_suffix(".rejects.csv")])
    print(
        f"scored {len(predictions)}, rejected {len(rejects)} of {len(files)} files: {out} (rejects in {out.with_suffix('.rejects.csv')})"
    )
    return predictions


def write_overlays(
    model, images: np.ndarray, paths: list[Path], probabilities: np.ndarray, folder: Path
) -> None:
    """A LayerCAM overlay per poster, explaining the class the model predicts."""
    from poster_ml import plots
    from poster_ml.explain.cam import (
        class_activation_maps,
        feature_and_logit_model,
        float32_copy,
        upsample,
    )
    from poster_ml.explain.grids import cam_layer_name

    folder.mkdir(parents=True, exist_ok=True)
    model = float32_copy(model)
    maps = upsample(
        class_activation_maps(feature_and_logit_model(model, cam_layer_name(model)), images)[
            "layer_cam"
        ],
        *images.shape[1:3],
    )
    for image, heat, path, probability in zip(images, maps, paths, probabilities, strict=True):
        figure = plots.heatmap_grid(
            image[None], heat[None], [f"p(fresh) {probability:.2f}"], path.name, columns=1
        )
        figure.savefig(folder / f"{path.stem}.cam.png", dpi=100)
        plots.close(figure)
