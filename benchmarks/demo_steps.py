"""Seconds per step of a demo (or any `main` run), read from its tracking store: each step
run's start and end, the train run's variant runs, and the main run itself.

    python benchmarks/demo_steps.py [--store sqlite:///mlflow.db]
"""

from __future__ import annotations

import argparse

from mlflow.tracking import MlflowClient


def seconds(run) -> float:
    return ((run.info.end_time or run.info.start_time) - run.info.start_time) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="sqlite:///mlflow.db")
    store = parser.parse_args().store
    client = MlflowClient(store)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        order_by=["attributes.start_time ASC"],
    )
    for run in runs:
        step = run.data.tags.get("poster_ml.step", "")
        if step in ("main", "preprocess", "train", "evaluate", "register"):
            print(f"{step:12s} {seconds(run):7.1f} s")
        elif step == "train_variant":
            print(f"  {run.data.tags.get('variant', ''):28s} {seconds(run):7.1f} s")


if __name__ == "__main__":
    main()
