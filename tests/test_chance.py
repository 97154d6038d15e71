"""Chance said aloud: a model that learned nothing is called so on the leaderboard, in
evaluate's lines and tables, in the report and in the ROC legend, and one whose answers
barely vary is named collapsed; every number that selects is the exact AUC of the kept
weights, not Keras's approximation."""

from __future__ import annotations

import json
import re

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import prepare_tiny
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from poster_ml.cli import main
from poster_ml.data.images import InputContract, encode_jpeg
from poster_ml.data.prepared import load_prepared
from poster_ml.data.synthetic import write_synthetic_posters
from poster_ml.evaluation.chance import ChanceVerdict
from poster_ml.models.predict import predict_rows
from poster_ml.models.variants import VARIANTS, build_model
from poster_ml.serving.model import log_poster_model
from poster_ml.tracking import logged_models


def runs_by_step(step: str) -> list:
    client = MlflowClient()
    return client.search_runs(
        [e.experiment_id for e in client.search_experiments()], f"tags.`poster_ml.step` = '{step}'"
    )


def artifact_text(run_id: str, path: str) -> str:
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path)
    with open(local) as file:
        return file.read()


def test_the_verdict_names_what_makes_a_model_no_better_than_chance():
    assert ChanceVerdict(0.61, 0.70, 0.59, 0.8).beats_chance
    assert ChanceVerdict(0.61, 0.70, 0.59, 0.8).words() == ""
    straddling = ChanceVerdict(0.45, 0.70, 0.59, 0.8)
    assert not straddling.beats_chance and straddling.label() == "no better than chance"
    assert straddling.words() == "no better than chance: its AUC interval reaches 0.5"
    majority = ChanceVerdict(0.61, 0.59, 0.59, 0.8)
    assert majority.words().endswith("its accuracy 0.590 does not beat the majority class's 0.590")
    collapsed = ChanceVerdict(0.61, 0.70, 0.59, 0.0013)
    assert collapsed.label() == "collapsed" and not collapsed.beats_chance
    assert collapsed.words() == "collapsed: every answer within 0.0013, no better than chance"
    assert not ChanceVerdict(float("nan"), float("nan"), 0.59, float("nan")).beats_chance


def test_the_roc_legend_marks_a_variant_that_does_not_beat_chance():
    from poster_ml.steps.evaluate import legend_name

    row = {"variant": "basic_cnn", "roc_auc_ci_low": 0.61, "accuracy": 0.7}
    row |= {"majority_baseline": 0.59, "spread": 0.5}
    assert legend_name(row) == "basic_cnn"
    assert legend_name(row | {"roc_auc_ci_low": 0.45}) == "basic_cnn (no better than chance)"
    assert legend_name(row | {"spread": 0.001}) == "basic_cnn (collapsed)"


def test_the_objective_and_best_val_auc_are_the_exact_auc_of_the_kept_weights(monkeypatch):
    """A model whose answers are bunched, so that Keras's AUC (200 thresholds) is far from
    the exact one: the learning rates are too small to move it from its random start.
    The objective Optuna saw, the trial's metric, the variant's best_val_auc and the
    leaderboard are all scikit-learn's AUC of the weights the trial kept."""
    import dataclasses

    from poster_ml.models import variants

    still = dataclasses.replace(VARIANTS["basic_cnn"], learning_rate=1e-9)
    monkeypatch.setitem(variants.VARIANTS, "basic_cnn", still)
    prepare_tiny()
    arguments = ["train", "--profile", "quick", "--variants", "basic_cnn", "--trials", "1"]
    assert main([*arguments, "--overrides", "max_epochs=2 batch_size=16"]) == 0
    (variant,) = runs_by_step("train_variant")
    (trial,) = runs_by_step("trial")
    data = load_prepared("data/prepared")
    model = logged_models.load_poster_model(variant.data.tags["model_uri"])[0]
    answers = predict_rows(model, data.reader("validation"))
    exact = roc_auc_score(data.labels("validation"), answers)
    assert answers.max() - answers.min() < 0.05  # Bunched, as the test needs.
    kept = pd.DataFrame(
        json.loads(artifact_text(trial.info.run_id, "trained_variant.json"))["history"]
    )
    keras_auc = float(kept.loc[kept["restored"], "val_auc"].iloc[0])
    assert abs(keras_auc - exact) > 0.02  # Where the two differ, the exact one is used:
    assert trial.data.metrics["objective_val_auc"] == pytest.approx(exact, abs=1e-9)
    assert variant.data.metrics["best_val_auc"] == pytest.approx(exact, abs=1e-9)
    (train,) = runs_by_step("train")
    board = json.loads(artifact_text(train.info.run_id, "leaderboard.json"))
    board = pd.DataFrame(board["data"], columns=board["columns"])
    assert board.loc[0, "val_auc"] == pytest.approx(exact, abs=1e-9)


def test_the_kept_epoch_is_the_one_every_figure_names(capsys):
    """Early stopping watches val_loss; here the epoch of the lowest val_loss is not the
    epoch of the highest (Keras) validation AUC. The progress line, the logged model's
    metrics and the leaderboard all name the kept epoch and its exact AUC."""
    prepare_tiny()
    arguments = ["train", "--profile", "quick", "--variants", "basic_cnn", "--trials", "0"]
    overrides = "max_epochs=5 batch_size=16 patience=10 lr_patience=10"
    assert main([*arguments, "--overrides", overrides]) == 0
    printed = capsys.readouterr().out
    line = re.search(r"kept epoch (\d+) of 5: validation AUC (\d\.\d{3})", printed)
    assert line, printed
    kept, said = int(line.group(1)), float(line.group(2))
    (variant,) = runs_by_step("train_variant")
    history = pd.DataFrame(
        json.loads(artifact_text(variant.info.run_id, "trained_variant.json"))["history"]
    )
    lowest_loss = int(history.loc[history["val_loss"].idxmin(), "epoch"])
    highest_auc = int(history.loc[history["val_auc"].idxmax(), "epoch"])
    assert kept == lowest_loss and lowest_loss != highest_auc  # What the test is about.
    (train,) = runs_by_step("train")
    board = json.loads(artifact_text(train.info.run_id, "leaderboard.json"))
    row = dict(zip(board["columns"], board["data"][0], strict=True))
    assert row["kept_epoch"] == kept and round(row["val_auc"], 3) == said
    (model,) = mlflow.search_logged_models(
        experiment_ids=[train.info.experiment_id], output_format="list"
    )
    metrics = {metric.key: metric.value for metric in model.metrics}
    assert metrics["best_val_auc"] == pytest.approx(row["val_auc"], abs=1e-9)
    data = load_prepared("data/prepared")
    answers = predict_rows(
        logged_models.load_poster_model(row["model_uri"])[0], data.reader("validation")
    )
    assert roc_auc_score(data.labels("validation"), answers) == pytest.approx(
        row["val_auc"], abs=1e-6
    )


def test_a_variant_trained_on_random_labels_is_said_to_be_no_better_than_chance(tmp_path):
    labels_csv = write_synthetic_posters(tmp_path / "raw", count=160, seed=5)
    table = pd.read_csv(labels_csv)
    status = table.columns[1]
    table[status] = np.random.default_rng(0).permutation(table[status].to_numpy())
    table.to_csv(labels_csv, index=False)
    prepared = str(tmp_path / "prepared")
    source = ["--source", str(labels_csv), "--images", str(tmp_path / "raw" / "images")]
    assert main(["preprocess", *source, "--size", "40", "--out", prepared]) == 0
    arguments = ["train", "--data", prepared, "--variants", "basic_cnn", "--trials", "0"]
    assert main([*arguments, "--overrides", "max_epochs=3 batch_size=16"]) == 0
    (train,) = runs_by_step("train")
    board = json.loads(artifact_text(train.info.run_id, "leaderboard.json"))
    row = dict(zip(board["columns"], board["data"][0], strict=True))
    assert row["verdict"] == "no better than chance"
    assert main(["evaluate", "--bootstrap-samples", "200", "--faithfulness-posters", "0"]) == 0
    (evaluation,) = runs_by_step("evaluate")
    page = artifact_text(evaluation.info.run_id, "report.html")
    assert "It is no better than chance" in page
    assert "<td>no better than chance</td>" in page  # The report's leaderboard.


def test_a_model_whose_answers_do_not_vary_is_named_collapsed(tmp_path, capsys):
    """A basic CNN whose output layer is zeroed answers 0.5 for every poster."""
    assert main(["preprocess", "--count", "120", "--size", "40", "--out", "p"]) == 0
    data = load_prepared("p")
    model = build_model(VARIANTS["basic_cnn"], data.image_size)
    output = model.get_layer("fresh_probability")
    output.set_weights([weight * 0 for weight in output.get_weights()])
    mlflow.set_experiment("poster-ml")
    with mlflow.start_run():
        example = encode_jpeg(data.reader("validation").read(np.array([0]))[0])
        info = log_poster_model(model, InputContract.of_dataset(data.info), {}, example)
    capsys.readouterr()
    arguments = ["evaluate", "--model-uri", info.model_uri, "--data", "p"]
    assert main([*arguments, "--bootstrap-samples", "50", "--faithfulness-posters", "0"]) == 0
    printed = capsys.readouterr().out
    assert "collapsed: every answer within 0.0000, no better than chance" in printed
    (evaluation,) = runs_by_step("evaluate")
    assert "It is collapsed" in artifact_text(evaluation.info.run_id, "report.html")
    results = artifact_text(evaluation.info.run_id, "results.md")
    assert "| collapsed |" in results
