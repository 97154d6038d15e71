"""Pruning pays: epochs spent by one seeded study with Optuna's median pruner against the
same study without pruning, the best validation AUC of each, and whether memory grows
from trial to trial (peak RSS after the 2nd and the 10th trial), side by side in one run.

    python benchmarks/bench_pruning.py [--trials 10] [--count 400] [--size 48] [--epochs 8]

Goals: epochs with pruning / without at most 0.6 (0.5 hoped), best validation AUC within
0.02, peak RSS after the 10th trial at most 1.1x the 2nd.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_study(data, pruner: str, trials: int, epochs: int) -> dict:
    import optuna
    from optuna_integration import KerasPruningCallback

    from poster_ml.config import AugmentConfig, TrainConfig
    from poster_ml.models import studies, tuning
    from poster_ml.models.fit import train_variant
    from poster_ml.models.session import releasing_memory
    from poster_ml.models.variants import VARIANTS

    variant = VARIANTS["regularized_cnn"]
    config = TrainConfig(max_epochs=epochs, weights="none", patience=epochs, trials=trials)
    study, _ = studies.open_study(
        f"bench-{pruner}", optuna.storages.InMemoryStorage(), 42, pruner, variant, {}
    )
    peaks: list[float] = []

    def objective(trial) -> float:
        values = tuning.search_space(trial, variant)
        trained = train_variant(
            variant,
            data,
            dataclasses.replace(config, **values),
            AugmentConfig(),
            [KerasPruningCallback(trial, "val_auc")],
        )
        return trained.validation_auc

    study.optimize(
        releasing_memory(objective),
        n_trials=trials,
        callbacks=[lambda study, trial: peaks.append(peak_mib())],
    )
    epochs_spent = sum(len(trial.intermediate_values) for trial in study.trials)
    pruned = sum(trial.state == optuna.trial.TrialState.PRUNED for trial in study.trials)
    return {"epochs": epochs_spent, "best": study.best_value, "pruned": pruned, "peaks": peaks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=8)
    arguments = parser.parse_args()
    from poster_ml.config import PreprocessConfig
    from poster_ml.data.prepare import prepare

    with tempfile.TemporaryDirectory() as folder:
        data = prepare(
            PreprocessConfig(count=arguments.count, size=arguments.size, out=folder, seed=1)
        )
        unpruned = run_study(data, "none", arguments.trials, arguments.epochs)
        pruned = run_study(data, "median", arguments.trials, arguments.epochs)
    print(
        f"regularized_cnn, {arguments.trials} trials of up to {arguments.epochs} epochs, {arguments.count} posters at {arguments.size} px, seed 42"
    )
    print(f"{'':<16}{'epochs':>8}{'pruned':>8}{'best val AUC':>14}")
    for name, result in (("without pruning", unpruned), ("median pruner", pruned)):
        print(f"{name:<16}{result['epochs']:>8}{result['pruned']:>8}{result['best']:>14.4f}")
    print(
        f"epochs with pruning / without: {pruned['epochs'] / unpruned['epochs']:.2f} (target <= 0.6, goal 0.5)"
    )
    print(
        f"best validation AUC difference: {pruned['best'] - unpruned['best']:+.4f} (target within 0.02)"
    )
    peaks = unpruned["peaks"]
    if len(peaks) >= 10:
        print(
            f"peak RSS after trial 2: {peaks[1]:.0f} MiB, after trial 10: {peaks[9]:.0f} MiB, ratio {peaks[9] / peaks[1]:.3f} (target <= 1.1)"
        )
        print("peak RSS after each trial, MiB: " + " ".join(f"{peak:.0f}" for peak in peaks))


if __name__ == "__main__":
    main()
