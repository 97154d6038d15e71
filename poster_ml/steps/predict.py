"""Batch prediction: poster files and folders in, a predictions CSV out, bad files in a
rejects CSV beside it with their reasons (the good ones are still scored), and, if asked,
one class-activation-map overlay per poster."""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from poster_ml import disk
from poster_ml.config import PredictConfig
from poster_ml.data.images import InputContract, PosterError
from poster_ml.errors import DatasetError, first_line
from poster_ml.tracking import datasets, logged_models, runs, store

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["path", "probability_fresh", "label"]
REJECT_COLUMNS = ["path", "reason", "detail"]


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


def decoded_or_reject(path: Path, contract: InputContract) -> np.ndarray | dict:
    """A poster decoded as the model's training data was, or its reject row."""
    try:
        return contract.decode(path.read_bytes())
    except (PosterError, OSError) as error:
        return {
            "path": str(path),
            "reason": getattr(error, "reason", "unreadable file"),
            "detail": first_line(error, 200),
        }


def decoded_batches(
    files: list[Path], contract: InputContract, batch_size: int
) -> Iterator[tuple[list[Path], list[np.ndarray], list[dict]]]:
    """Batches of decoded posters (and the batch's rejects), decoded ahead on every core.

    Decoding runs in threads (Pillow lets go of the interpreter while it decodes), at most
    two batches ahead of the model: the model works on one batch while the next are
    decoded, and memory holds a few batches, however many files there are.
    """
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        ahead: collections.deque = collections.deque()
        pending = iter(files)
        while True:
            while len(ahead) < 3 * batch_size and (path := next(pending, None)) is not None:
                ahead.append((path, pool.submit(decoded_or_reject, path, contract)))
            if not ahead:
                return
            paths, images, rejects = [], [], []
            for _ in range(min(batch_size, len(ahead))):
                path, decoded = ahead.popleft()
                result = decoded.result()
                if isinstance(result, dict):
                    rejects.append(result)
                else:
                    paths.append(path)
                    images.append(result)
            yield paths, images, rejects


@dataclasses.dataclass(frozen=True)
class Scorer:
    """The model that scores, its input contract (decoding, threshold, class names), its
    CAM model when overlays are asked for, and their folder."""

    model: object
    contract: InputContract
    cam_model: object | None
    cam_folder: Path


def predict_step(config: PredictConfig) -> Path:
    """Scores the files (or a prepared dataset's test split); returns the predictions CSV."""
    if config.data:
        if config.paths:
            raise DatasetError("give poster files or --data, not both")
        return predict_prepared(config)
    files = list_files(config.paths.split())
    if not files:
        raise DatasetError("no poster files given; name files or folders to score")
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from poster_ml.explain.cam import poster_cam_model

    with runs.step_run("predict", {"predict": config}, seed=0):
        model, settings = logged_models.load_poster_model(config.model)
        contract = InputContract.from_settings(settings)
        contract.check_decoder()
        # The CAM model is built once, for every batch.
        cam_model = poster_cam_model(model) if config.cam else None
        scorer = Scorer(model, contract, cam_model, Path(config.cam))
        batches = decoded_batches(files, contract, config.batch_size)
        # Written under temporary names and renamed when whole: a full disk midway leaves
        # no half a CSV that looks finished.
        partial = out.with_name(out.name + ".partial")
        with disk.writing(out, cleanup=(partial, rejects_file(partial))):
            scored, rejected = write_predictions(batches, scorer, partial, len(files))
            os.replace(rejects_file(partial), rejects_file(out))
            os.replace(partial, out)
        store.log_files([out, rejects_file(out)])
    log.info(
        f"scored {scored}, rejected {rejected} of {len(files)} files: {out} (rejects in {rejects_file(out)})"
    )
    return out


def rejects_file(out: Path) -> Path:
    return out.with_suffix(".rejects.csv")


def write_predictions(batches, scorer: Scorer, out: Path, total: int) -> tuple[int, int]:
    """Writes each batch's rows as it is scored, so memory stays flat with the folder;
    returns how many posters were scored and rejected."""
    from poster_ml.models.predict import predict_probabilities

    scored = rejected = 0
    with (
        open(out, "w", newline="") as predictions_file,
        open(rejects_file(out), "w", newline="") as rejects_csv,
        tqdm(total=total, desc="scoring posters", unit="poster", disable=None) as progress,
    ):
        predictions = csv.DictWriter(predictions_file, PREDICTION_COLUMNS)
        rejects = csv.DictWriter(rejects_csv, REJECT_COLUMNS)
        predictions.writeheader()
        rejects.writeheader()
        for paths, images, batch_rejects in batches:
            rejects.writerows(batch_rejects)
            rejected += len(batch_rejects)
            if images:
                batch = np.stack(images)
                probabilities = predict_probabilities(scorer.model, batch)
                labels = scorer.contract.labels(probabilities)
                predictions.writerows(prediction_rows(paths, probabilities, labels))
                scored += len(images)
                if scorer.cam_model is not None:
                    write_overlays(scorer, batch, paths, probabilities)
            progress.update(len(paths) + len(batch_rejects))
    return scored, rejected


def prediction_rows(paths: list[Path], probabilities: np.ndarray, labels) -> Iterator[dict]:
    for path, probability, label in zip(paths, probabilities, labels, strict=True):
        yield {"path": str(path), "probability_fresh": float(probability), "label": str(label)}


def predict_prepared(config: PredictConfig) -> Path:
    """Scores the test split of a prepared dataset (read from its shard, already decoded),
    beside each poster's id, source and true class."""
    from poster_ml.models.predict import predict_test_split

    with runs.step_run("predict", {"predict": config}, seed=0):
        data = datasets.open_data(config.data)
        model, settings = logged_models.load_poster_model(config.model)
        probabilities = predict_test_split(model, data, chunk=config.batch_size)
        predictions = data.split("test")[["id", "source", "class"]].assign(
            probability_fresh=probabilities,
            label=InputContract.from_settings(settings).labels(probabilities),
        )
        with disk.writing(Path(config.out), cleanup=(Path(config.out),)):
            predictions.to_csv(config.out, index=False)
        datasets.dataset_input(data, context="prediction")
        store.log_files([Path(config.out)])
    log.info(
        f"scored the {len(predictions)} test posters of dataset {data.digest[:12]}: {config.out}"
    )
    return Path(config.out)


def write_overlays(
    scorer: Scorer, images: np.ndarray, paths: list[Path], probabilities: np.ndarray
) -> None:
    """A LayerCAM overlay per poster, explaining the class the model predicts, and its
    detected regions and design attributes beside it (<poster>.regions.json): the same PNG
    and JSON that a served answer with explain=true holds (serving/overlay.py)."""
    from poster_ml.serving.overlay import poster_explanations

    scorer.cam_folder.mkdir(parents=True, exist_ok=True)
    files = [path.read_bytes() for path in paths]
    explained = poster_explanations(scorer.cam_model, images, files)
    for path, png, regions, design in zip(
        paths, explained.pngs, explained.regions, explained.designs, strict=True
    ):
        (scorer.cam_folder / f"{path.stem}.cam.png").write_bytes(png)
        found = {"regions": regions, "design": design}
        (scorer.cam_folder / f"{path.stem}.regions.json").write_text(json.dumps(found, indent=2))
