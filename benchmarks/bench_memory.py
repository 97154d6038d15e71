"""Peak memory of one training epoch on 4x the data against 1x, side by side in one run.

Each epoch runs in a fresh process (basic_cnn, streamed from the prepared shards), which
reports its peak resident memory; the pipeline should keep it flat as the data grows.

    python benchmarks/bench_memory.py [--count 500] [--size 160]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def one_epoch(data_dir: str) -> None:
    """Child process: trains basic_cnn for one epoch and prints its peak RSS in MiB."""
    from poster_ml.config import AugmentConfig, TrainConfig
    from poster_ml.data.prepared import load_prepared
    from poster_ml.models.fit import train_variant
    from poster_ml.models.variants import VARIANTS

    data = load_prepared(data_dir)
    train_variant(
        VARIANTS["regularized_cnn_aug"],
        data,
        TrainConfig(max_epochs=1, weights="none"),
        AugmentConfig(),
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mib": peak, "train_posters": len(data.split("train"))}))


def measure(data_dir: str) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--child", data_dir], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        one_epoch(arguments.child)
        return
    from poster_ml.config import PreprocessConfig
    from poster_ml.data.prepare import prepare

    with tempfile.TemporaryDirectory() as folder:
        results = {}
        for factor in (1, 4):
            out = os.path.join(folder, f"x{factor}")
            prepare(PreprocessConfig(count=arguments.count * factor, size=arguments.size, out=out))
            results[factor] = measure(out)
    for factor, result in results.items():
        shard_mib = result["train_posters"] * arguments.size**2 * 3 / 2**20
        print(
            f"{factor}x data: {result['train_posters']:5d} training posters ({shard_mib:6.1f} MiB of pixels), peak RSS {result['peak_mib']:7.1f} MiB"
        )
    print(
        f"peak memory 4x / 1x: {results[4]['peak_mib'] / results[1]['peak_mib']:.3f} (target <= 1.15)"
    )


if __name__ == "__main__":
    main()
