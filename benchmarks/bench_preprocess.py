"""Posters per second of the decode step with and without JPEG reduced-size decoding.

Large source posters (6x the study's 305 x 206) are decoded to the study's 224 pixels,
side by side in one run, first in one process and then through the whole preprocess
step on all cores.

    python benchmarks/bench_preprocess.py [--count 240] [--scale 6]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from PIL import Image

from poster_ml.config import PreprocessConfig
from poster_ml.data.prepare import decode_file, prepare
from poster_ml.data.synthetic import write_synthetic_posters


def make_large_posters(folder: Path, count: int, scale: int) -> Path:
    labels_csv = write_synthetic_posters(folder, count, seed=0)
    for path in (folder / "images").glob("*.jpg"):
        image = Image.open(path)
        image.resize((image.width * scale, image.height * scale), Image.Resampling.BICUBIC).save(
            path, quality=90
        )
    return labels_csv


def posters_per_second(paths: list[Path], reduced_decode: bool, size: int = 224) -> float:
    start = time.perf_counter()
    for path in paths:
        decode_file(path, size, max_pixels=10**9, reduced_decode=reduced_decode)
    return len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=240)
    parser.add_argument("--scale", type=int, default=6)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        labels_csv = make_large_posters(Path(folder) / "raw", arguments.count, arguments.scale)
        paths = sorted((Path(folder) / "raw" / "images").glob("*.jpg"))
        width, height = Image.open(paths[0]).size
        print(f"{len(paths)} JPEG posters of {width} x {height} decoded to 224 x 224")
        posters_per_second(paths[:5], True)  # Warm the file cache and Pillow.
        full = posters_per_second(paths, reduced_decode=False)
        reduced = posters_per_second(paths, reduced_decode=True)
        print(
            f"one process   full decode {full:8.1f} posters/s   reduced decode {reduced:8.1f} posters/s   ratio {reduced / full:5.2f}x"
        )
        timings = {}
        for reduced_decode in (False, True):
            config = PreprocessConfig(
                source=str(labels_csv),
                images=str(Path(folder) / "raw" / "images"),
                out=str(Path(folder) / f"out{reduced_decode}"),
                reduced_decode=reduced_decode,
                max_pixels=10**9,
            )
            start = time.perf_counter()
            prepare(config)
            timings[reduced_decode] = len(paths) / (time.perf_counter() - start)
        print(
            f"whole step    full decode {timings[False]:8.1f} posters/s   reduced decode {timings[True]:8.1f} posters/s   ratio {timings[True] / timings[False]:5.2f}x"
        )


if __name__ == "__main__":
    main()
