"""The cost as the work grows: each step of poster-ml, run as a user runs it, on 1,000,
4,000 and 16,000 synthetic posters at the study's 224 px (16,000 is the study's size).

    python benchmarks/bench_scale.py [--sizes 1000,4000,16000] [--vgg-sizes 1000,4000]
                                     [--json scale.json] [--figure scale.png]
                                     [--only-preprocess] [--from-json scale.json]
                                     [--earlier "LABEL=earlier.json"]

For each size, in a folder of its own with its own SQLite store: `preprocess`, one epoch
of `basic_cnn`, `evaluate` with and without the faithfulness measures, `predict` on the
folder of poster files, and (at --vgg-sizes only: a VGG16 pass over 16,000 posters at
224 px takes most of an hour on two cores) one head epoch of `vgg16_features`, whose time
is mostly the feature cache. Each command runs in a process of its own, timed from inside
(Python's imports excluded, TensorFlow's start and MLflow's logging included), with its
own peak RSS and that of its largest child; disk is what the command added to the folder.
The growth exponent k is the slope of log(seconds) on log(posters) (time ~ n^k; goal
k <= 1.05); a command's fixed cost pulls k below 1 at small sizes, so k between the two
largest sizes is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TIMED = """
import json, resource, sys, time
from poster_ml.cli import main
started = time.perf_counter()
code = main(sys.argv[1:])
print(json.dumps({"seconds": time.perf_counter() - started, "code": code,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "child_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""
EPOCH = "max_epochs=1 weights=none"


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def timed(folder: Path, *arguments: str) -> dict:
    """One `poster-ml` command in `folder`: seconds, peak memory and the disk it added."""
    before = folder_bytes(folder)
    finished = subprocess.run(
        [sys.executable, "-c", TIMED, *arguments, "--quiet"],
        cwd=folder,
        env=os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"},
        capture_output=True,
        text=True,
    )
    if finished.returncode != 0:
        raise RuntimeError(f"{' '.join(arguments)} failed:\n{finished.stdout}{finished.stderr}")
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    if result["code"] != 0:
        raise RuntimeError(f"{' '.join(arguments)} exited {result['code']}:\n{finished.stdout}")
    return result | {"disk_mb": (folder_bytes(folder) - before) / 2**20}


def logged_model_uri(folder: Path, variant: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    models = client.search_logged_models(experiments, filter_string=f"name = '{variant}'")
    return f"models:/{models[0].model_id}"


def measure(size: int, root: Path, with_vgg: bool, only_preprocess: bool) -> dict[str, dict]:
    folder = root / str(size)
    folder.mkdir(parents=True)
    prepared = str(folder / "prepared")
    results = {"preprocess": timed(folder, "preprocess", "--count", str(size), "--out", prepared)}
    if only_preprocess:
        return report(size, results)
    train = ["train", "--data", prepared, "--trials", "0", "--overrides", EPOCH]
    results["basic_cnn epoch"] = timed(folder, *train, "--variants", "basic_cnn")
    evaluate = ["evaluate", "--train-run", "latest", "--bootstrap-samples", "1000"]
    results["evaluate"] = timed(folder, *evaluate, "--faithfulness-posters", "8")
    results["evaluate, no faithfulness"] = timed(folder, *evaluate, "--faithfulness-posters", "0")
    model = logged_model_uri(folder, "basic_cnn")
    posters = str(folder / "prepared" / "synthetic" / "images")
    results["predict"] = timed(folder, "predict", "--model", model, posters, "--out", "p.csv")
    if with_vgg:
        results["vgg16 cache + epoch"] = timed(folder, *train, "--variants", "vgg16_features")
    return report(size, results)


def report(size: int, results: dict[str, dict]) -> dict[str, dict]:
    for name, result in results.items():
        print(
            f"{size:>6} {name:<26} {result['seconds']:8.1f} s {result['peak_mb']:8.0f} MB "
            f"(child {result['child_peak_mb']:5.0f} MB) {result['disk_mb']:8.1f} MB disk",
            flush=True,
        )
    return results


def exponent(sizes: list[int], seconds: list[float]) -> float:
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def summary(table: dict[int, dict[str, dict]]) -> None:
    print(f"\n{'step':<26}{'k (all)':>8}{'k (two largest)':>16}{'peak MB ratio':>15}")
    steps = {name for results in table.values() for name in results}
    for name in sorted(steps, key=list(next(iter(table.values())).keys()).index):
        sizes = [size for size in table if name in table[size]]
        seconds = [table[size][name]["seconds"] for size in sizes]
        peaks = [table[size][name]["peak_mb"] for size in sizes]
        if len(sizes) < 2:
            continue
        largest = exponent(sizes[-2:], seconds[-2:])
        print(
            f"{name:<26}{exponent(sizes, seconds):>8.2f}{largest:>16.2f}"
            f"{peaks[-1] / peaks[0]:>15.2f}  ({sizes[0]} to {sizes[-1]} posters)"
        )
        if name.startswith("vgg16") and max(table) not in sizes:
            estimate = seconds[-1] * (max(table) / sizes[-1]) ** largest
            print(f"{'':<26}extrapolated to {max(table)} posters: about {estimate / 60:.0f} min")


def figure(table: dict[int, dict[str, dict]], path: str, earlier: dict | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (time_axes, memory_axes) = plt.subplots(1, 2, figsize=(14, 4.5))
    names = list(next(iter(table.values())).keys())
    for index, name in enumerate(names):
        sizes = [size for size in table if name in table[size]]
        color = f"C{index}"
        time_axes.plot(sizes, [table[s][name]["seconds"] for s in sizes], "o-", color=color)
        memory_axes.plot(sizes, [table[s][name]["peak_mb"] for s in sizes], "o-", color=color)
        memory_axes.plot([], [], "o-", color=color, label=name)
    for name, (label, results) in (earlier or {}).items():
        sizes = sorted(results)
        peaks = [results[size][name]["peak_mb"] for size in sizes]
        memory_axes.plot(sizes, peaks, "o--", color="grey", label=f"{name}, {label}")
    reference = np.array([min(table), max(table)])
    start = table[min(table)][names[0]]["seconds"]
    time_axes.plot(reference, start * reference / reference[0], "k:", label="linear (k = 1)")
    time_axes.set(xscale="log", yscale="log", xlabel="posters", ylabel="seconds")
    time_axes.set_title("time (log-log)")
    time_axes.legend(fontsize=8)
    memory_axes.set(xscale="log", xlabel="posters", ylabel="peak RSS, MB", ylim=(0, None))
    memory_axes.set_title("peak memory of the command")
    memory_axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"figure: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,4000,16000")
    parser.add_argument("--vgg-sizes", default="1000,4000")
    parser.add_argument("--root", default="", help="working folder (default: a temporary one)")
    parser.add_argument("--json", default="", help="write the measurements here")
    parser.add_argument("--figure", default="")
    parser.add_argument("--only-preprocess", action="store_true")
    parser.add_argument("--from-json", default="", help="draw these measurements again")
    parser.add_argument(
        "--earlier",
        default="",
        help="LABEL=FILE: an earlier --json of preprocess, drawn dashed in the memory panel",
    )
    arguments = parser.parse_args()
    sizes = [int(size) for size in arguments.sizes.split(",")]
    vgg_sizes = {int(size) for size in arguments.vgg_sizes.split(",") if size}
    if arguments.from_json:
        table = {
            int(size): row
            for size, row in json.loads(Path(arguments.from_json).read_text()).items()
        }
    else:
        root = Path(arguments.root or tempfile.mkdtemp(prefix="poster-ml-scale-"))
        print(f"224 px, {os.cpu_count()} cores, working in {root}")
        table = {
            size: measure(size, root, size in vgg_sizes, arguments.only_preprocess)
            for size in sizes
        }
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(table, indent=1))
    summary(table)
    if arguments.figure:
        earlier = None
        if arguments.earlier:
            label, file = arguments.earlier.split("=", 1)
            rows = json.loads(Path(file).read_text())
            earlier = {"preprocess": (label, {int(size): row for size, row in rows.items()})}
        figure(table, arguments.figure, earlier)


if __name__ == "__main__":
    main()
