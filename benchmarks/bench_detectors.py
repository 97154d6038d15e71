"""How well and how fast the detectors of data/annotations.py work, at 224 pixels as
preprocess stores posters:

- on synthetic posters: the detected title (the largest text block) against the planted
  title, recall and precision at IoU 0.5 or more;
- on posters composed from photographs (benchmarks/photo_posters.py): the recall of the
  titles (IoU 0.5) and of the faces placed (a detected face whose centre lies in a placed
  face), and the detected faces that match no placed one;
- annotation time for 1,000 and 4,000 posters through preprocess's own path (one shard,
  the processes preprocess uses), extrapolated linearly to 16,000.

    python benchmarks/bench_detectors.py [--posters 400] [--timing 1000,4000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from photo_posters import write_photo_posters
from PIL import Image

from poster_ml.data.annotations import Detectors, annotate, annotate_shard
from poster_ml.data.images import decode_poster
from poster_ml.data.prepared import Shard, create_shard
from poster_ml.data.synthetic import POSTER_HEIGHT, POSTER_WIDTH, draw_poster
from poster_ml.evaluation.design import wilson_interval
from poster_ml.explain.localisation import box_iou

SIZE = 224


def with_interval(hits: int, trials: int) -> str:
    low, high = wilson_interval(hits, trials)
    return f"{hits / trials:.3f} ({low:.3f}-{high:.3f}, {hits} of {trials})"


def synthetic_agreement(count: int) -> dict[str, str]:
    rng = np.random.default_rng(11)
    detectors, planted, detected = Detectors(), [], []
    for index in range(count):
        image, _, title, _ = draw_poster(rng, fresh=index % 2 == 0)
        square = np.asarray(image.resize((SIZE, SIZE), Image.BILINEAR))
        found = annotate(square, detectors, timeout=0)
        planted.append(np.divide(title, [POSTER_WIDTH, POSTER_HEIGHT] * 2))
        detected.append(found.text[0] if len(found.text) else np.full(4, np.nan))
    detected_array = np.array(detected)
    matched = int((box_iou(np.array(planted), detected_array) >= 0.5).sum())
    found_any = int((~np.isnan(detected_array).any(axis=1)).sum())
    return {
        "synthetic title recall (IoU >= 0.5)": with_interval(matched, count),
        "synthetic title precision (IoU >= 0.5)": with_interval(matched, found_any),
    }


def centre_inside(face: np.ndarray, placed: np.ndarray) -> bool:
    x, y = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
    return bool(placed[0] <= x <= placed[2] and placed[1] <= y <= placed[3])


def photograph_recall(count: int, folder: Path) -> dict[str, str]:
    truth = write_photo_posters(folder, count, seed=5)
    detectors = Detectors()
    titles = faces_placed = faces_found = false_faces = 0
    for row in truth.itertuples():
        square = decode_poster((folder / row.source).read_bytes(), SIZE)
        found = annotate(square, detectors, timeout=0)
        title = np.array(json.loads(row.title))[None]
        if len(found.text) and box_iou(title, found.text[:1])[0] >= 0.5:
            titles += 1
        placed = [np.array(box) for box in json.loads(row.faces)]
        faces_placed += len(placed)
        faces_found += sum(any(centre_inside(f, p) for f in found.faces) for p in placed)
        false_faces += sum(not any(centre_inside(f, p) for p in placed) for f in found.faces)
    return {
        "photograph title recall (IoU >= 0.5)": with_interval(titles, count),
        "photograph face recall (centre inside)": with_interval(faces_found, faces_placed),
        "photograph faces found where none was placed, per poster": f"{false_faces / count:.3f}",
    }


def annotation_seconds(count: int, folder: Path) -> float:
    """Seconds preprocess's annotation takes for `count` synthetic posters at SIZE pixels."""
    path = folder / f"staging-{count}.npy"
    create_shard(path, (count, SIZE, SIZE, 3))
    shard, rng = Shard(path), np.random.default_rng(count)
    for index in range(count):
        image, *_ = draw_poster(rng, fresh=index % 2 == 0)
        shard.write(index, np.asarray(image.resize((SIZE, SIZE), Image.BILINEAR))[None])
    started = time.perf_counter()
    annotate_shard(str(path), list(range(count)), 10.0, os.cpu_count() or 1, serial_below=200)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posters", type=int, default=400)
    parser.add_argument("--timing", default="1000,4000")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        results = synthetic_agreement(arguments.posters)
        results |= photograph_recall(arguments.posters // 2, Path(folder) / "photos")
        seconds = {}
        for count in (int(value) for value in arguments.timing.split(",") if value):
            seconds[count] = annotation_seconds(count, Path(folder))
            results[f"annotation of {count} posters, seconds"] = f"{seconds[count]:.1f}"
    if len(seconds) >= 2:
        counts = sorted(seconds)
        slope = (seconds[counts[-1]] - seconds[counts[0]]) / (counts[-1] - counts[0])
        per_poster = {count: seconds[count] / count for count in counts}
        results["seconds per poster at each count"] = ", ".join(
            f"{count}: {value:.4f}" for count, value in per_poster.items()
        )
        results["16,000 posters, extrapolated (linear), seconds"] = (
            f"{seconds[counts[-1]] + slope * (16_000 - counts[-1]):.0f}"
        )
    print("| measure | value |\n| --- | --- |")
    for name, value in results.items():
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
