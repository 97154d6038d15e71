"""Honest on photographs: posters composed from photographs that ship with installed packages
(benchmarks/photo_posters.py), which no one here drew, through preprocess, train, evaluate
and a served answer."""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from helpers import variant_model_uri
from test_report import latest_evaluate_run, report_of

from poster_ml.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from photo_posters import write_photo_posters


@pytest.mark.slow
def test_photograph_posters_through_every_step_to_a_served_answer(tmp_path, monkeypatch):
    truth = write_photo_posters(tmp_path / "photos", 240, seed=1)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    prepared = str(tmp_path / "prepared")
    assert (
        main(
            ["preprocess", "--source", str(tmp_path / "photos"), "--size", "160", "--out", prepared]
        )
        == 0
    )
    manifest = pd.read_csv(Path(prepared) / "manifest.csv")
    # The detectors see the faces placed: posters composed rotten carry three or more.
    placed = truth.set_index("source")["faces"].map(lambda cell: len(json.loads(cell)))
    found = manifest.set_index("source")["faces"]
    assert np.corrcoef(placed[found.index], found)[0, 1] > 0.6
    assert (manifest["title_area"] > 0).mean() > 0.7
    arguments = ["--profile", "quick", "--variants", "basic_cnn", "--trials", "0"]
    assert main(["train", "--data", prepared, *arguments, "--overrides", "max_epochs=4"]) == 0
    assert main(["evaluate", "--data", prepared, "--bootstrap-samples", "100"]) == 0
    page = html.unescape(report_of(latest_evaluate_run(store), store))
    assert "cannot be measured" not in page
    assert (
        len(
            re.findall(
                r"of its mass on the detected text and \d+ % \(\d+-\d+ %\) on the detected faces",
                page,
            )
        )
        == 2
    )
    assert re.search(r"attributes alone .*? scores test AUC 0\.\d+ \(95 % interval", page)
    # A served answer (the logged pyfunc, as `mlflow models serve` loads it) names the faces.
    model = mlflow.pyfunc.load_model(variant_model_uri(store))
    crowded = truth[truth["faces"].map(lambda cell: len(json.loads(cell))) >= 4].iloc[0]
    poster = (tmp_path / "photos" / crowded["source"]).read_bytes()
    answer = model.predict(pd.DataFrame({"image": [poster]}), params={"explain": True})
    regions = json.loads(answer["regions"][0])
    assert sum(region["kind"] == "face" for region in regions) >= 2
    assert json.loads(answer["design"][0])["faces"] >= 2
