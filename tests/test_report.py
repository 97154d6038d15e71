"""The evaluate run's report.html: the sentences it says, from known rows, and the page a
real evaluate run logs (self-contained, with its figures), for synthetic posters and for
posters whose regions are not known."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import variant_model_uri
from mlflow.tracking import MlflowClient

from poster_ml.cli import main
from poster_ml.evaluation.report import (
    CANNOT_BE_MEASURED,
    NOT_MEASURED_WITHOUT_FAITHFULNESS,
    faithfulness_verdict,
    finding_sentences,
    headline,
)

ROW = {
    "variant": "basic_cnn",
    "val_auc": 0.812,
    "count": 80.0,
    "roc_auc": 0.781,
    "roc_auc_ci_low": 0.675,
    "roc_auc_ci_high": 0.878,
    "accuracy": 0.7,
    "accuracy_ci_low": 0.6,
    "accuracy_ci_high": 0.8,
    "majority_baseline": 0.59,
}


def with_interval(name: str, value: float, low: float, high: float) -> dict[str, float]:
    return {name: value, f"{name}_ci_low": low, f"{name}_ci_high": high}


def test_the_headline_names_the_variant_chosen_on_validation_beside_chance_and_the_majority():
    sentence = headline(ROW, candidates=7)
    assert sentence.startswith("Of 7 variants, basic_cnn is best on validation (AUC 0.812)")
    assert "80 untouched test posters" in sentence
    assert "AUC 0.781 (95 % interval 0.675 to 0.878), better than chance (0.5)" in sentence
    assert "majority class scores 0.590" in sentence
    straddling = headline(ROW | {"roc_auc_ci_low": 0.45}, candidates=7)
    assert "not distinguishable from chance" in straddling
    assert headline(ROW | {"roc_auc_ci_high": 0.49}, 1).startswith("basic_cnn was evaluated")


def test_the_finding_is_said_with_intervals_beside_position_alone_or_said_unmeasurable():
    row = (
        ROW
        | {"faithfulness_posters": 16.0}
        | with_interval("finding_most_fresh_layer_cam_title_share", 0.30, 0.25, 0.36)
        | with_interval("finding_most_fresh_layer_cam_people_share", 0.12, 0.08, 0.15)
        | with_interval("finding_most_fresh_prior_title_share", 0.33, 0.31, 0.35)
        | with_interval("finding_most_fresh_prior_people_share", 0.18, 0.16, 0.2)
    )
    assert finding_sentences(row) == [
        "For its 8 most-fresh posters, LayerCAM puts 30 % (25-36 %) of its mass on the planted "
        "title and 12 % (8-15 %) on the planted people, where position alone would put 33 % "
        "and 18 %."
    ]
    assert finding_sentences(ROW) == [CANNOT_BE_MEASURED]
    # Annotated posters evaluated without scoring any map: said so, not "cannot be measured".
    annotated = ROW | {"design_baseline_roc_auc": 0.7}
    assert finding_sentences(annotated) == [NOT_MEASURED_WITHOUT_FAITHFULNESS]


def test_the_faithfulness_verdict_follows_the_interval_of_the_difference():
    row = ROW | with_interval("layer_cam_deletion_minus_random", -0.1, -0.15, -0.05)
    row |= with_interval("layer_cam_deletion_minus_prior", 0.01, -0.02, 0.04)
    verdict = faithfulness_verdict(row)
    assert "beats a random order (deletion area -0.100" in verdict
    assert "does not beat the location prior" in verdict
    worse = faithfulness_verdict(
        ROW | with_interval("layer_cam_deletion_minus_random", 0.1, 0.05, 0.2)
    )
    assert "does worse than a random order" in worse
    assert "not measured" in faithfulness_verdict(ROW)


def latest_evaluate_run(store: str):
    client = MlflowClient(store)
    return client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        "tags.`poster_ml.step` = 'evaluate'",
        order_by=["attributes.start_time DESC"],
    )[0]


def report_of(run, store: str) -> str:
    path = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="report.html", tracking_uri=store
    )
    return Path(path).read_text()


def assert_self_contained(page: str, least_images: int) -> None:
    images = re.findall(r'<img src="([^"]*)"', page)
    assert len(images) >= least_images and all(
        src.startswith("data:image/png;base64,") for src in images
    )
    # Nothing the browser would fetch: no scripts, style sheets or frames from elsewhere.
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page and "<link" not in page


def test_a_real_evaluate_run_logs_a_report_that_says_what_was_found(
    trained_store, monkeypatch, capsys
):
    store, _data = trained_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    capsys.readouterr()
    arguments = ["evaluate", "--bootstrap-samples", "50", "--cam-posters", "4"]
    assert main([*arguments, "--faithfulness-posters", "8"]) == 0
    printed = capsys.readouterr().out
    evaluation = latest_evaluate_run(store)
    page = report_of(evaluation, store)
    train = MlflowClient(store).get_run(evaluation.data.tags["train_run_id"])
    chosen = train.data.tags["best_variant"]  # The train run's choice, on validation.
    assert f"Of 2 variants, {chosen} is best on validation" in page
    # The sentence's figures are the chosen model's test metrics, as logged on it.
    model = next(
        model
        for model in mlflow.search_logged_models(
            experiment_ids=[train.info.experiment_id], output_format="list"
        )
        if model.name == chosen
    )
    metrics = {
        metric.key: metric.value
        for metric in model.metrics
        if metric.run_id == evaluation.info.run_id
    }
    assert (
        f"scores AUC {metrics['test_roc_auc']:.3f} (95 % interval "
        f"{metrics['test_roc_auc_ci_low']:.3f} to {metrics['test_roc_auc_ci_high']:.3f})"
    ) in page
    assert re.search(r"For its 4 most-fresh posters, LayerCAM puts \d+ % \(\d+-\d+ %\)", page)
    assert "where position alone would put" in page
    assert "Deleting the poster cell by cell in LayerCAM" in page
    assert_self_contained(page, least_images=4)  # ROC and the three grids.
    assert "evaluation/basic_cnn/" in page and "faithfulness.md" in page
    # The console says the decision and where the report is; the tables only with --verbose.
    assert f"Of 2 variants, {chosen} is best on validation" in printed
    assert "report.html" in printed and "| variant |" not in printed


def test_posters_without_planted_regions_get_a_measured_finding_and_the_design_baseline(
    trained_store, monkeypatch, tmp_path
):
    """A user's own posters (a folder of fresh/ and rotten/) have no planted regions: the
    finding is measured on the detected text and faces, with intervals, and the attributes'
    baseline stands beside the CNN."""
    store, data = trained_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    manifest = pd.read_csv(data / "manifest.csv")
    images = data / "synthetic" / "images"
    for label in ("fresh", "rotten"):
        (tmp_path / "own" / label).mkdir(parents=True)
    for source, label in zip(manifest["source"], manifest["label"], strict=True):
        shutil.copy(images / source, tmp_path / "own" / ("fresh" if label else "rotten") / source)
    size = str(pd.read_json(data / "dataset.json", typ="series")["size"])
    own = str(tmp_path / "prepared")
    # The preprocess run goes to a store of its own: the trained store is shared by the
    # session, and its tests count its preprocess runs.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'own.db'}")
    assert (
        main(["preprocess", "--source", str(tmp_path / "own"), "--size", size, "--out", own]) == 0
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    model_uri = variant_model_uri(store)
    arguments = ["evaluate", "--model-uri", model_uri, "--data", own, "--bootstrap-samples", "50"]
    assert main([*arguments, "--cam-posters", "2", "--faithfulness-posters", "4"]) == 0
    page = report_of(latest_evaluate_run(store), store)
    assert f"{model_uri} was evaluated; on" in page
    assert CANNOT_BE_MEASURED not in page and "planted" not in page
    measured = re.findall(
        r"LayerCAM puts (\d+) % \((\d+)-(\d+) %\) of its mass on the detected text and "
        r"(\d+) % \((\d+)-(\d+) %\) on the detected faces, where position alone would put",
        page,
    )
    assert len(measured) == 2  # The most-fresh and the most-rotten posters.
    # The model finds fresh posters by their titles: some of its map lies on detected text.
    assert int(measured[0][0]) > 0
    for share, low, high, *_ in measured:
        assert int(low) <= int(share) <= int(high)
    baseline = re.search(
        r"attributes alone .*? scores test AUC (0\.\d+) \(95 % interval (0\.\d+) to (0\.\d+)\) "
        r"against .*?'s (0\.\d+): the CNN minus the attributes is ([+-]0\.\d+) \(paired 95 % interval",
        html.unescape(page),
    )
    assert baseline is not None
    assert float(baseline[2]) <= float(baseline[1]) <= float(baseline[3])
    assert float(baseline[5]) == pytest.approx(float(baseline[4]) - float(baseline[1]), abs=0.0011)
    assert "fresh share above the median" in page
    assert_self_contained(page, least_images=2)


def test_the_study_questions_are_answered_by_the_paired_interval():
    from poster_ml.evaluation.comparison import PairedComparison, study_answers
    from poster_ml.evaluation.report import answer_sentence

    helped = PairedComparison(0.8, 0.7, 0.1, 0.02, 0.18)
    sentence = answer_sentence("Does regularisation help?", "regularized_cnn", "basic_cnn", helped)
    assert sentence.startswith("Does regularisation help? regularized_cnn against basic_cnn: ")
    assert "difference +0.100 (95 % interval +0.020 to +0.180); yes" in sentence
    unclear = PairedComparison(0.75, 0.7, 0.05, -0.02, 0.12)
    assert "not shown: the interval holds 0" in answer_sentence("Q?", "a", "b", unclear)
    worse = PairedComparison(0.6, 0.7, -0.1, -0.18, -0.02)
    assert "no: it does worse" in answer_sentence("Q?", "a", "b", worse)
    # Only the questions whose two variants were both evaluated, on the same posters.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    answers = {name: rng.random(60) for name in ("basic_cnn", "regularized_cnn", "vgg16_features")}
    answered = study_answers(labels, answers, samples=50)
    assert [(question, new, old) for question, new, old, _ in answered] == [
        ("Does regularisation help?", "regularized_cnn", "basic_cnn")
    ]
