"""Tuning that models: TPE with its start-up sized to the budget (a third of the trials,
the `startup_trials` default) against random search, at equal trials, on a cheap study:
the head of `vgg16_features` on cached features (random VGG16 weights here, as offline).

    python benchmarks/bench_tpe.py [--trials 30] [--seeds 5] [--figure tpe_vs_random.png]

For each seed and sampler, the best-so-far validation AUC after each trial; printed: the
median over seeds at 10, 20 and 30 trials for each sampler, side by side, and a figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def best_so_far(data, sampler_name: str, seed: int, trials: int, epochs: int) -> list[float]:
    import numpy as np
    import optuna

    from poster_ml.config import AugmentConfig, TrainConfig
    from poster_ml.models import studies, tuning
    from poster_ml.models.fit import train_variant
    from poster_ml.models.session import releasing_memory
    from poster_ml.models.variants import VARIANTS

    variant = VARIANTS["vgg16_features"]
    config = TrainConfig(max_epochs=epochs, weights="none", patience=epochs, trials=trials)
    sampler = (
        optuna.samplers.TPESampler(seed=seed, n_startup_trials=studies.startup_trials(-1, trials))
        if sampler_name == "tpe"
        else optuna.samplers.RandomSampler(seed=seed)
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial) -> float:
        values = tuning.search_space(trial, variant)
        trained = train_variant(
            variant, data, dataclasses.replace(config, seed=seed, **values), AugmentConfig()
        )
        return trained.validation_auc

    study.optimize(releasing_memory(objective), n_trials=trials)
    return list(np.maximum.accumulate([trial.value for trial in study.trials]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--figure", default="")
    arguments = parser.parse_args()
    import numpy as np

    from poster_ml.config import PreprocessConfig
    from poster_ml.data.prepare import prepare

    curves: dict[str, list[list[float]]] = {"tpe": [], "random": []}
    with tempfile.TemporaryDirectory() as folder:
        data = prepare(
            PreprocessConfig(count=arguments.count, size=arguments.size, out=folder, seed=1)
        )
        for seed in range(arguments.seeds):
            for name in curves:
                curves[name].append(
                    best_so_far(data, name, seed, arguments.trials, arguments.epochs)
                )
    medians = {name: np.median(np.array(runs), axis=0) for name, runs in curves.items()}
    print(
        f"vgg16_features head on cached features, {arguments.count} posters at {arguments.size} px, "
        f"{arguments.seeds} seeds, up to {arguments.epochs} epochs a trial; TPE start-up "
        f"{max(1, arguments.trials // 3)} trials"
    )
    print(
        f"{'trials':>8}{'TPE median':>12}{'random median':>15}{'TPE - random':>14}"
        f"{'seeds TPE ahead':>17}{'tied':>6}"
    )
    for count in (10, 20, 30):
        if count <= arguments.trials:
            tpe, random = medians["tpe"][count - 1], medians["random"][count - 1]
            # Seed by seed, the two samplers share the data and the trainings' seed: a
            # paired count says more than the medians alone.
            pairs = [(t[count - 1], r[count - 1]) for t, r in zip(*curves.values(), strict=True)]
            ahead, tied = sum(t > r for t, r in pairs), sum(t == r for t, r in pairs)
            print(
                f"{count:>8}{tpe:>12.4f}{random:>15.4f}{tpe - random:>+14.4f}"
                f"{ahead:>11} of {len(pairs)}{tied:>6}"
            )
    if arguments.figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(6, 4))
        for name, runs in curves.items():
            for run in runs:
                axes.plot(
                    range(1, len(run) + 1), run, alpha=0.2, color="C0" if name == "tpe" else "C1"
                )
            axes.plot(
                range(1, len(medians[name]) + 1),
                medians[name],
                lw=2,
                color="C0" if name == "tpe" else "C1",
                label=f"{name} (median of {arguments.seeds} seeds)",
            )
        axes.set_xlabel("trials")
        axes.set_ylabel("best validation AUC so far")
        axes.legend()
        figure.tight_layout()
        figure.savefig(arguments.figure, dpi=120)
        print(f"figure: {arguments.figure}")


if __name__ == "__main__":
    main()
