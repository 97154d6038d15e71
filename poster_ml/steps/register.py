"""The register step: the best variant of a train run (by validation AUC) into the Model
Registry, once per logged model. It becomes @champion only if it beats the current
champion on the same test posters (a paired bootstrap of the difference in test AUC);
otherwise it is @challenger, with the reason as its description. The champion it
replaces keeps @previous."""

from __future__ import annotations

from poster_ml.config import RegisterConfig
from poster_ml.data.prepared import load_prepared
from poster_ml.tracking import loading, registry, runs


def register_step(config: RegisterConfig):
    from poster_ml.explain.evaluation import predict_test_split
    from poster_ml.explain.metrics import paired_auc_comparison

    with runs.step_run("register", {"register": config}, seed=config.seed):
        train = runs.find_train_run(config.train_run)
        model, run, note = registry.best_candidate(train, config.allow_cpu)
        name = config.model_name
        version = registry.existing_version(name, model.model_id)
        if version is not None:
            print(f"{model.name} of run {run.info.run_id} is already {name} version {version.version}: nothing to register")
            return version
        version = registry.register(model, run, name)
        champion = registry.version_by_alias(name, "champion")
        if champion is None:
            registry.promote(name, version.version, None)
            verdict = f"version {version.version} ({model.name}) is the first @champion"
        else:
            data = load_prepared(train.data.tags["data_path"])
            labels = data.labels("test")
            new = predict_test_split(loading.load_keras_model(model.model_uri), data)
            old = predict_test_split(loading.load_keras_model(f"models:/{name}/{champion.version}"), data)
            comparison = paired_auc_comparison(labels, new, old, config.bootstrap_samples, config.seed)
            registry.describe(name, version.version, "", {"test_auc": f"{comparison.new_auc:.4f}", "compared_with": champion.version})
            if comparison.new_is_better:
                registry.promote(name, version.version, champion.version)
                verdict = f"version {version.version} ({model.name}) is the new @champion, version {champion.version} @previous: {comparison}"
            else:
                verdict = f"version {version.version} ({model.name}) stays @challenger: it does not beat @champion version {champion.version} on the same test posters, {comparison}"
                registry.keep_as_challenger(name, version.version, verdict)
        if note:
            registry.describe(name, version.version, note if champion is None or comparison.new_is_better else f"{verdict}; {note}", {})
            print(note)
        runs.set_tags({"registered_model": name, "registered_version": str(version.version)})
    print(verdict)
    print(f"serve the champion with: make serve   (or: poster-ml serve --model models:/{name}@champion)")
    return version
