"""The pipeline's steps, each one MLflow run: what the command line and MLproject call."""

from __future__ import annotations

from poster_ml import plots, tracking
from poster_ml.config import AugmentConfig, EvaluateConfig, PreprocessConfig, RegisterConfig, TrainConfig
from poster_ml.dataset import PreparedData, load_prepared
from poster_ml.errors import DatasetError
from poster_ml.preprocess import load_or_prepare_default, prepare, summary_text
from poster_ml.report import leaderboard, markdown_table, results_table


def preprocess_step(config: PreprocessConfig) -> PreparedData:
    with tracking.step_run("preprocess", {"preprocess": config}, seed=config.seed):
        dataset = prepare(config)
        tracking.log_preprocess(dataset)
    print(summary_text(dataset))
    return dataset


def train_step(config: TrainConfig, augment: AugmentConfig, profile: str, data_dir: str, variant_names: str):
    """Trains the variants, one nested run each, and returns the leaderboard."""
    from poster_ml.training import device_info, train_variant
    from poster_ml.variants import check_weights, get_variants

    variants = get_variants(variant_names)
    check_weights(variants, config.weights)
    data = load_or_prepare_default(data_dir, config.image_size, config.synthetic_count, config.seed)
    configs = {"train": config, "augment": augment}
    with tracking.step_run("train", configs, seed=config.seed) as parent:
        tags = device_info() | {"profile": profile}
        tracking.set_tags(tags)
        tracking.dataset_input(data, context="training")
        rows = []
        for variant in variants:
            print(f"training {variant.name}: {variant.description}")
            with tracking.variant_run(variant.name, parent, tags):
                tracking.dataset_input(data, context="training")
                trained = train_variant(variant, data, config, augment, [tracking.epoch_logger()])
                rows.append(tracking.log_trained_variant(trained, data, configs))
        board = leaderboard(rows)
        tracking.log_leaderboard(board)
    print(markdown_table(board.drop(columns="model_uri")))
    return board


def evaluate_step(config: EvaluateConfig):
    """Evaluates every variant of a train run (or one model) and returns the results table."""
    from poster_ml.evaluate import evaluate_model

    with tracking.step_run("evaluate", {"evaluate": config}, seed=config.seed):
        if config.model_uri:
            train = None
            targets = [tracking.EvaluationTarget(config.model_uri, config.model_uri, None, {})]
        else:
            train = tracking.find_train_run(config.train_run)
            targets = tracking.evaluation_targets(train)
            tracking.set_tags({"train_run_id": train.info.run_id})
        data = load_prepared(config.data or (train.data.tags.get("data_path", "data/prepared") if train else "data/prepared"))
        if train is not None and train.data.tags.get("dataset_digest") != data.digest:
            raise DatasetError(f"the prepared data in {data.path} changed since train run {train.info.run_id}; pass --data")
        tracking.dataset_input(data, context="evaluation")
        rows, curves = [], {}
        for target in targets:
            print(f"evaluating {target.name}")
            model = tracking.load_keras_model(target.model_uri)
            result = evaluate_model(model, data, config, with_activations=target.name == config.activations_variant or len(targets) == 1)
            tracking.log_model_evaluation(result, target.run_id)
            rows.append({"variant": target.name, **target.summary, **result.metrics})
            curves[target.name] = result.roc
        table = results_table(rows)
        roc_figure = plots.roc_curves(curves, "ROC curves on the test split")
        run_ids = [train.info.run_id] if train else []
        tracking.log_results_table(table, roc_figure, [*run_ids, tracking.active_run_id()])
    print(markdown_table(table))
    return table


def register_step(config: RegisterConfig):
    from poster_ml.registry import register_best

    with tracking.step_run("register", {"register": config}, seed=0):
        version = register_best(config)
        tracking.set_tags({"registered_model": config.model_name, "registered_version": str(version.version)})
    print(f"registered {config.model_name} version {version.version} ({version.tags.get('variant')}, {version.tags.get('ranked_by')} {float(version.tags.get('score')):.3f}) as @{config.alias}")
    print(f"serve it with: mlflow models serve -m models:/{config.model_name}@{config.alias} --env-manager local")
    return version
