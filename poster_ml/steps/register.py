"""The register step: the best variant of a train run (by validation AUC) into the Model
Registry, once per logged model, and the gate that decides its alias.

The first version becomes @champion only if its test AUC interval lies above 0.5 (else
@challenger, "not better than chance"). A later one becomes @champion only if it beats
the current champion on the same test posters (a paired bootstrap of the difference in
test AUC); the champion it replaces keeps @previous. When the champion trained on other
data, only the test posters that neither model saw in training or validation (by
content hash) take part. A version is gated once: its `gate` tag is set last, so a
register step that dies midway finishes the gate when it runs again.
"""

from __future__ import annotations

import mlflow
import numpy as np
from sklearn.metrics import roc_auc_score

from poster_ml.config import RegisterConfig
from poster_ml.data.prepared import PreparedData
from poster_ml.errors import DatasetError
from poster_ml.tracking import loading, prepared_runs, registry, runs, store, variant_models


def register_step(config: RegisterConfig):
    with runs.step_run("register", {"register": config}, seed=config.seed):
        train = store.find_train_run(config.train_run)
        model, run, note = registry.best_candidate(train, config.allow_cpu)
        data = prepared_runs.open_data(config.data or prepared_runs.used_data(train))
        trained_on = run.data.tags.get("dataset_digest", "")
        if trained_on != data.digest:
            raise DatasetError(
                f"{model.name} of train run {train.info.run_id} trained on dataset {trained_on[:12] or '(unknown)'}, "
                f"but {data.path} holds {data.digest[:12]}; pass --data with the prepared data it trained on"
            )
        name = config.model_name
        version = registry.existing_version(name, model.model_id)
        if version is not None and registry.GATE in version.tags:
            print(
                f"{model.name} of run {run.info.run_id} is already {name} version {version.version} (@{version.tags[registry.GATE]}): nothing to register"
            )
            return version
        if version is None:
            version = registry.register(model, run, name)
        else:
            print(
                f"version {version.version} was registered but not gated (an interrupted register): gating it now"
            )
        verdict = gate(name, version, model, data, config)
        registry.describe(name, version.version, f"{verdict}; {note}" if note else verdict, {})
        if note:
            print(note)
        update_model_card(
            name,
            {
                "version": version.version,
                "tags": registry.version_tags(name, version.version),
                "verdict": verdict,
            },
            data,
        )
        mlflow.set_tags({"registered_model": name, "registered_version": str(version.version)})
    print(verdict)
    print(
        f"serve the champion with: make serve   (or: poster-ml serve --model models:/{name}@champion)"
    )
    return version


def gate(name: str, version, model, data: PreparedData, config: RegisterConfig) -> str:
    """Decides the new version's alias, tags it with its test AUC and the decision, and
    returns the verdict in one sentence."""
    from poster_ml.explain.evaluation import predict_test_split
    from poster_ml.explain.metrics import bootstrap_interval, paired_auc_comparison

    labels = data.labels("test").astype(int)
    new = predict_test_split(loading.load_poster_model(model.model_uri)[0], data)
    interval = bootstrap_interval(labels, new, roc_auc_score, config.bootstrap_samples, config.seed)
    registry.describe(
        name,
        version.version,
        "",
        {
            "test_auc": f"{roc_auc_score(labels, new):.4f}",
            "test_auc_low": f"{interval.low:.4f}",
            "test_auc_high": f"{interval.high:.4f}",
            "test_posters": str(len(labels)),
        },
    )
    champion = registry.version_by_alias(name, "champion")
    label = f"version {version.version} ({model.name})"
    if champion is not None and champion.version == version.version:
        return registry.finish_gate(
            name, version.version, "champion", f"{label} is @champion"
        )  # Promoted before an interruption.
    if champion is None:
        figures = f"test AUC {roc_auc_score(labels, new):.3f} (95 % interval {interval.low:.3f} to {interval.high:.3f}) on {len(labels)} test posters"
        if interval.low > 0.5:
            registry.promote(name, version.version, None)
            return registry.finish_gate(
                name, version.version, "champion", f"{label} is the first @champion: {figures}"
            )
        registry.set_alias(name, version.version, "challenger")
        return registry.finish_gate(
            name,
            version.version,
            "challenger",
            f"{label} stays @challenger, not better than chance: {figures}",
        )
    shared, how = comparable_posters(data, champion)
    if shared.sum() < 2 or len(np.unique(labels[shared])) < 2:
        registry.set_alias(name, version.version, "challenger")
        return registry.finish_gate(
            name,
            version.version,
            "challenger",
            f"{label} stays @challenger: too few test posters {how} ({int(shared.sum())}) to compare with @champion version {champion.version}",
        )
    old = predict_test_split(
        loading.load_poster_model(f"models:/{name}/{champion.version}")[0], data
    )
    comparison = paired_auc_comparison(
        labels[shared], new[shared], old[shared], config.bootstrap_samples, config.seed
    )
    registry.describe(
        name,
        version.version,
        "",
        {"compared_with": champion.version, "compared_posters": str(int(shared.sum()))},
    )
    where = f"on {int(shared.sum())} test posters {how}"
    if comparison.new_is_better:
        registry.promote(name, version.version, champion.version)
        return registry.finish_gate(
            name,
            version.version,
            "champion",
            f"{label} is the new @champion, version {champion.version} @previous: {comparison}, {where}",
        )
    registry.set_alias(name, version.version, "challenger")
    verdict = f"{label} stays @challenger: it does not beat @champion version {champion.version} {where}, {comparison}"
    return registry.finish_gate(name, version.version, "challenger", verdict)


def update_model_card(name: str, latest: dict, data: PreparedData) -> None:
    """The registered model's description, rewritten from the champion's facts."""
    from poster_ml.model_card import model_card

    champion = registry.version_by_alias(name, "champion")
    facts = (
        None
        if champion is None
        else {
            "version": champion.version,
            "tags": champion.tags,
            "verdict": champion.description or "",
        }
    )
    registry.describe_model(name, model_card(name, facts, latest, data.info))


def comparable_posters(data: PreparedData, champion) -> tuple[np.ndarray, str]:
    """Which test posters the paired comparison may use, and how to say which they are.

    The candidate trained on `data`, whose test split it never saw. A champion trained on
    the same data did not see it either; one trained on other data may have trained on
    some of these posters, which are left out by content hash.
    """
    test = data.split("test")
    if champion.tags.get("dataset_digest") == data.digest:
        return np.ones(len(test), dtype=bool), "(both trained on this dataset)"
    seen = variant_models.seen_posters(champion.tags.get("source_run", ""))
    if seen is None:
        return np.ones(
            len(test), dtype=bool
        ), "(the champion's training posters are not recorded: all of them)"
    return ~test["sha256"].isin(seen).to_numpy(), "that neither model saw in training or validation"
