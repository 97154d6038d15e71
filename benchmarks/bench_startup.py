"""What a process of this project costs before it does any work, side by side in one run:

- importing TensorFlow, and running `poster-ml preprocess` on 16 posters, with the
  packages' bytecode as `make install` compiles it, against the same with no bytecode to
  read (Python pointed at an empty bytecode folder with `-X pycache_prefix`, and told not
  to write any: a machine where PYTHONDONTWRITEBYTECODE is set and nothing compiled it);
- preprocess as it runs now (TensorFlow never imported), against the same with Keras
  imported first, as preprocess's process did before it stopped importing the tuning
  module's Keras.

Each case runs `--repeats` times, alternating, in fresh processes; the medians and their
ratios are printed.

    python benchmarks/bench_startup.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PREPROCESS = (
    "import sys; {before}from poster_ml.cli import main; "
    "sys.exit(main(['preprocess', '--count', '16', '--size', '32', '--out', sys.argv[1]]))"
)


def seconds(code: str, folder: Path, empty_cache: Path | None) -> float:
    """Wall-clock seconds of `python -c code folder`, without bytecode when empty_cache."""
    options = ["-X", f"pycache_prefix={empty_cache}"] if empty_cache else []
    environment = os.environ | {
        "PYTHONDONTWRITEBYTECODE": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
    }
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, *options, "-c", code, str(folder / "prepared")],
        env=environment,
        cwd=folder,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        empty = root / "no-bytecode"
        empty.mkdir()
        cases = {
            "import tensorflow, no bytecode": ("import tensorflow", empty),
            "import tensorflow, compiled bytecode": ("import tensorflow", None),
            "preprocess 16 posters, no bytecode": (PREPROCESS.format(before=""), empty),
            "preprocess 16 posters, compiled bytecode": (PREPROCESS.format(before=""), None),
            "preprocess 16 posters, Keras imported first (compiled)": (
                PREPROCESS.format(before="import keras; "),
                None,
            ),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for repeat in range(repeats):
            for index, (name, (code, cache)) in enumerate(cases.items()):
                folder = root / f"round-{repeat}-case-{index}"
                folder.mkdir()
                times[name].append(seconds(code, folder, cache))
            print(f"round {repeat + 1} of {repeats} done", file=sys.stderr)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        runs = ", ".join(f"{value:.2f}" for value in times[name])
        print(f"{name:58s} median {median:6.2f} s  ({runs})")
    ratios = (
        (
            "TensorFlow's import, no bytecode / compiled",
            "import tensorflow, no bytecode",
            "import tensorflow, compiled bytecode",
        ),
        (
            "preprocess, no bytecode / compiled",
            "preprocess 16 posters, no bytecode",
            "preprocess 16 posters, compiled bytecode",
        ),
        (
            "preprocess, with Keras / without",
            "preprocess 16 posters, Keras imported first (compiled)",
            "preprocess 16 posters, compiled bytecode",
        ),
    )
    for label, slower, faster in ratios:
        print(f"{label}: {medians[slower] / medians[faster]:.2f}x")


if __name__ == "__main__":
    main()
