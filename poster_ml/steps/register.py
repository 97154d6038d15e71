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

import dataclasses
import logging

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from poster_ml.config import RegisterConfig
from poster_ml.data.prepared import PreparedData
from poster_ml.model_card import known_limits, limits_in_brief
from poster_ml.tracking import datasets, logged_models, registry, runs, schema

log = logging.getLogger(__name__)


def register_step(config: RegisterConfig):
    with runs.step_run("register", {"register": config}, seed=config.seed):
        train = schema.find_train_run(config.train_run)
        model, run, note = registry.best_candidate(train, config.allow_cpu)
        data = datasets.data_trained_on(
            run,
            config.data or datasets.used_data(train),
            f"{model.name} of train run {train.info.run_id}",
        )
        name = config.model_name
        version = registry.existing_version(name, model.model_id)
        if version is not None and registry.GATE in version.tags:
            log.info(
                f"{model.name} of run {run.info.run_id} is already {name} version {version.version} (@{version.tags[registry.GATE]}): nothing to register"
            )
            return version
        if version is None:
            version = registry.register(model, run, name)
        else:
            log.info(
                f"version {version.version} was registered but not gated (an interrupted register): gating it now"
            )
        verdict = gate(name, version, model, data, config)
        report = schema.evaluation_report(train.info.run_id)
        limits = known_limits({"tags": version.tags}, data.info)
        registry.describe(
            name,
            version.version,
            "; ".join([verdict, *([note] if note else [])])
            + (f". The evaluate run's report: {report}" if report else ""),
            {"known_limits": limits_in_brief(limits)}
            | ({"evaluation_report": report} if report else {}),
        )
        if note:
            log.info(note)
        update_model_card(
            name,
            {
                "version": version.version,
                "tags": MlflowClient().get_model_version(name, version.version).tags,
                "verdict": verdict,
            },
            data,
        )
        mlflow.set_tags({"registered_model": name, "registered_version": str(version.version)})
    log.info(verdict)
    log.info(
        f"serve the champion with: make serve   (or: poster-ml serve --model models:/{name}@champion)"
    )
    return version


@dataclasses.dataclass(frozen=True)
class GateCandidate:
    """The new version at the gate, and its test predictions."""

    name: str
    version: str
    label: str  # "version 3 (basic_cnn)", as verdicts name it.
    labels: np.ndarray
    probabilities: np.ndarray

    def decide(self, alias: str, verdict: str, previous: str | None = None) -> str:
        """Gives the version its alias (a new champion's predecessor keeps @previous),
        marks it gated (the last thing the gate writes) and returns the verdict."""
        client = MlflowClient()
        if alias == "champion" and previous is not None:
            client.set_registered_model_alias(self.name, "previous", previous)
        client.set_registered_model_alias(self.name, alias, self.version)
        client.set_model_version_tag(self.name, self.version, registry.GATE, alias)
        return verdict


def gate(name: str, version, model, data: PreparedData, config: RegisterConfig) -> str:
    """Decides the new version's alias, tags it with its test AUC and the decision, and
    returns the verdict in one sentence."""
    from poster_ml.evaluation.chance import verdict_of
    from poster_ml.evaluation.metrics import ranking_figures
    from poster_ml.models.predict import predict_test_split

    labels = data.labels("test").astype(int)
    new = predict_test_split(logged_models.load_poster_model(model.model_uri)[0], data)
    candidate = GateCandidate(
        name, version.version, f"version {version.version} ({model.name})", labels, new
    )
    majority = int(np.bincount(data.labels("train").astype(int), minlength=2).argmax())
    figures = ranking_figures(labels, new, majority, config.bootstrap_samples, config.seed)
    auc, low, high = figures["roc_auc"], figures["roc_auc_ci_low"], figures["roc_auc_ci_high"]
    tags = {
        key: f"{value:.4f}"
        for key, value in {"test_auc": auc, "test_auc_low": low, "test_auc_high": high}.items()
    }
    registry.describe(name, version.version, "", tags | {"test_posters": str(len(labels))})
    champion = registry.version_by_alias(name, "champion")
    if champion is not None and champion.version == version.version:
        # Promoted before an interruption: only the gate's mark is missing.
        return candidate.decide("champion", f"{candidate.label} is @champion")
    if champion is None:
        said = f"test AUC {auc:.3f} (95 % interval {low:.3f} to {high:.3f}) on {len(labels)} test posters"
        chance = verdict_of(figures)
        if chance.beats_chance:
            return candidate.decide("champion", f"{candidate.label} is the first @champion: {said}")
        verdict = f"{candidate.label} stays @challenger, {chance.words()}: {said}"
        return candidate.decide("challenger", verdict)
    return challenge(candidate, champion, data, config)


def challenge(
    candidate: GateCandidate, champion, data: PreparedData, config: RegisterConfig
) -> str:
    """The new version against the champion, on the test posters neither saw in training."""
    from poster_ml.evaluation.comparison import paired_auc_comparison
    from poster_ml.models.predict import predict_test_split

    name, labels = candidate.name, candidate.labels
    shared, how = comparable_posters(data, champion)
    count = int(shared.sum())
    if count < 2 or len(np.unique(labels[shared])) < 2:
        verdict = f"{candidate.label} stays @challenger: too few test posters {how} ({count}) to compare with @champion version {champion.version}"
        return candidate.decide("challenger", verdict)
    old = predict_test_split(
        logged_models.load_poster_model(f"models:/{name}/{champion.version}")[0], data
    )
    comparison = paired_auc_comparison(
        labels[shared],
        candidate.probabilities[shared],
        old[shared],
        config.bootstrap_samples,
        config.seed,
    )
    registry.describe(
        name,
        candidate.version,
        "",
        {"compared_with": champion.version, "compared_posters": str(count)},
    )
    where = f"on {count} test posters {how}"
    if comparison.new_is_better:
        verdict = f"{candidate.label} is the new @champion, version {champion.version} @previous: {comparison}, {where}"
        return candidate.decide("champion", verdict, previous=champion.version)
    verdict = f"{candidate.label} stays @challenger: it does not beat @champion version {champion.version} {where}, {comparison}"
    return candidate.decide("challenger", verdict)


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
    MlflowClient().update_registered_model(
        name, description=model_card(name, facts, latest, data.info)
    )


def comparable_posters(data: PreparedData, champion) -> tuple[np.ndarray, str]:
    """Which test posters the paired comparison may use, and how to say which they are.

    The candidate trained on `data`, whose test split it never saw. A champion trained on
    the same data did not see it either; one trained on other data may have trained on
    some of these posters, which are left out by content hash.
    """
    test = data.split("test")
    if champion.tags.get("dataset_digest") == data.digest:
        return np.ones(len(test), dtype=bool), "(both trained on this dataset)"
    seen = logged_models.seen_posters(champion.tags.get("source_run", ""))
    if seen is None:
        return np.ones(
            len(test), dtype=bool
        ), "(the champion's training posters are not recorded: all of them)"
    return ~test["sha256"].isin(seen).to_numpy(), "that neither model saw in training or validation"
