"""The synthetic posters carry a learnable signal and record where it is."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from poster_ml.config import PreprocessConfig
from poster_ml.data.prepare import prepare
from poster_ml.data.synthetic import REGION_COLUMNS, write_synthetic_posters


def gradient_features(images: np.ndarray) -> np.ndarray:
    """Mean edge strength on a 9 x 9 grid: enough to tell a big title from rows of figures."""
    gray = images.astype(np.float32).mean(-1)
    edges = np.abs(np.diff(gray, axis=1))[:, :, :-1] + np.abs(np.diff(gray, axis=2))[:, :-1, :]
    count, side = len(images), (edges.shape[1] // 9) * 9
    return (
        edges[:, :side, :side]
        .reshape(count, 9, side // 9, 9, side // 9)
        .mean((2, 4))
        .reshape(count, -1)
    )


def test_signal_is_learnable_by_a_simple_classifier(tmp_path):
    dataset = prepare(PreprocessConfig(count=600, size=64, out=str(tmp_path), seed=1))
    train, test = dataset.split("train"), dataset.split("test")
    features = {
        name: gradient_features(dataset.reader(name).read(np.arange(len(rows))))
        for name, rows in (("train", train), ("test", test))
    }
    classifier = HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(
        features["train"], train["label"]
    )
    accuracy = classifier.score(features["test"], test["label"])
    majority = max(test["label"].mean(), 1 - test["label"].mean())
    assert accuracy > majority + 0.12, (accuracy, majority)


def test_labels_regions_and_noise_are_recorded(tmp_path):
    labels = pd.read_csv(write_synthetic_posters(tmp_path, count=400, seed=2, label_noise=0.15))
    assert labels["tomatometer_status"].isin(["Fresh", "Certified-Fresh", "Rotten"]).all()
    regions = labels[list(REGION_COLUMNS)].to_numpy()
    assert ((regions >= 0) & (regions <= 1)).all()
    assert (regions[:, 2] > regions[:, 0]).all() and (regions[:, 3] > regions[:, 1]).all()
    flipped = (labels["tomatometer_status"] == "Rotten") == (labels["planted"] == "fresh")
    assert 0.08 < flipped.mean() < 0.22  # About label_noise of the labels are flipped.


def test_a_poster_depends_only_on_seed_and_index(tmp_path):
    write_synthetic_posters(tmp_path / "small", count=5, seed=9)
    write_synthetic_posters(tmp_path / "large", count=20, seed=9)
    for index in range(5):
        name = f"images/syn{index:06d}.jpg"
        assert (tmp_path / "small" / name).read_bytes() == (tmp_path / "large" / name).read_bytes()


def test_dataset_json_states_the_signal_and_the_measured_baseline(synthetic_dataset):
    info = synthetic_dataset.info
    facts = info["synthetic_signal"]
    assert facts == {
        "title_cue_accuracy": 0.896,
        "best_rule_accuracy": 0.9562,
        "accuracy_ceiling": 0.8193,
        "expected_fresh_share": 0.5588,
    }
    # 400 posters: the measured share lies within three standard errors of the expected one.
    assert abs(info["fresh_share"] - facts["expected_fresh_share"]) < 3 * (0.56 * 0.44 / 400) ** 0.5
    assert info["majority_baseline"] == max(info["fresh_share"], 1 - info["fresh_share"])


def test_the_recorded_drawings_follow_the_documented_cue_rates(tmp_path):
    """Measured on 1,500 drawings: the fresh share after noise is about 0.56, not 0.584."""
    labels = pd.read_csv(write_synthetic_posters(tmp_path, count=1500, seed=4, label_noise=0.15))
    fresh = labels["tomatometer_status"].isin(["Fresh", "Certified-Fresh"]).mean()
    assert abs(fresh - 0.5588) < 3 * (0.56 * 0.44 / 1500) ** 0.5
